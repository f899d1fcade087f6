%% eflambe_http: the pull endpoint, read by go tool pprof and httpc.
-module(eflambe_http_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(W, eflambe_workload).

all() ->
    [profile_read_by_go_tool, one_request_at_a_time, capture_of_calls, bad_requests,
     this_machine_only, options, two_endpoints].

init_per_testcase(_Case, Config) ->
    {ok, Server} = eflambe_http:start([{port, 0}, {max_seconds, 20}]),
    [{server, Server}, {port, eflambe_http:port(Server)} | Config].

end_per_testcase(_Case, Config) ->
    ok = eflambe_http:stop(?config(server, Config)),
    eflambe_test_util:wait_until(fun() -> eflambe_tracer:running_session() =:= undefined end).

url(Config, PathAndQuery) ->
    "http://127.0.0.1:" ++ integer_to_list(?config(port, Config)) ++ PathAndQuery.

http_get(Url) ->
    {ok, {{_, Code, _}, _Headers, Body}} =
        httpc:request(get, {Url, []}, [{timeout, 60000}], [{body_format, binary}]),
    {Code, Body}.

spin() ->
    _ = ?W:fib(15),
    receive stop -> ok after 0 -> spin() end.

%% go tool pprof fetches a profile from the endpoint, as it would from a
%% Go program's; the busy function comes first. Skipped without go.
profile_read_by_go_tool(Config) ->
    case os:find_executable("go") of
        false ->
            {skip, "go tool pprof: go (Debian's golang-go) is not installed"};
        Go ->
            Busy = spawn(?MODULE, spin, []),
            try
                {0, Out} = eflambe_test_util:run(
                             %% (pprof waits 1.5 times `seconds' for the answer by
                             %% default: too short on a busy machine.)
                             Go, ["tool", "pprof", "-top", "-timeout=60",
                                  url(Config, "/debug/pprof/profile?seconds=2")],
                             [{env, [{"PPROF_TMPDIR", ?config(priv_dir, Config)}]}]),
                ct:pal("~s", [Out]),
                {match, [First]} = re:run(Out, "flat%.*\\n\\s*\\S+\\s+\\S+%\\s+\\S+%\\s+\\S+\\s+\\S+%\\s+(\\S+)",
                                          [{capture, all_but_first, binary}]),
                ?assertEqual(<<"eflambe_workload:fib/1">>, First)
            after
                Busy ! stop
            end
    end.

%% A second request while one runs is told to come back later.
one_request_at_a_time(Config) ->
    Self = self(),
    Url = url(Config, "/debug/pprof/profile?seconds=1"),
    _ = [spawn(fun() -> Self ! {answer, http_get(Url)} end) || _ <- [1, 2]],
    Codes = lists:sort([receive {answer, {Code, _}} -> Code after 30000 -> timeout end
                        || _ <- [1, 2]]),
    ?assertEqual([200, 429], Codes),
    %% Then the next is served.
    ?assertMatch({200, <<31, 139, _/binary>>}, http_get(Url)).

%% The next calls of a function, as one pprof profile.
capture_of_calls(Config) ->
    Caller = spawn(fun Loop() ->
                           _ = ?W:two(12),
                           receive stop -> ok after 50 -> Loop() end
                   end),
    try
        {200, Profile} = http_get(url(Config, "/debug/pprof/capture?mfa=eflambe_workload:two/1"
                                         "&count=2&timeout=10")),
        Text = zlib:gunzip(Profile),
        ?assertMatch({_, _}, binary:match(Text, <<"eflambe_workload:two/1">>))
    after
        Caller ! stop
    end.

bad_requests(Config) ->
    Unknown = "no_such_module_" ++ integer_to_list(erlang:unique_integer([positive])),
    ?assertMatch({400, _}, http_get(url(Config, "/debug/pprof/capture?mfa=" ++ Unknown ++ ":f/1"))),
    %% No atom was made of it.
    ?assertError(badarg, list_to_existing_atom(Unknown)),
    ?assertMatch({400, _}, http_get(url(Config, "/debug/pprof/capture"))),
    ?assertMatch({400, _}, http_get(url(Config, "/debug/pprof/capture?mfa=lists:seq/9"))),
    ?assertMatch({400, _}, http_get(url(Config, "/debug/pprof/profile?seconds=0"))),
    ?assertMatch({400, _}, http_get(url(Config, "/debug/pprof/profile?seconds=21"))),
    ?assertMatch({400, _}, http_get(url(Config, "/debug/pprof/profile?seconds=x"))),
    ?assertMatch({400, _}, http_get(url(Config, "/debug/pprof/profile?seconds"))),
    ?assertMatch({400, _}, http_get(url(Config, "/debug/pprof/profile?seconds=1&nodes=a@b"))),
    ?assertMatch({404, _}, http_get(url(Config, "/debug/pprof/heap"))),
    {ok, {{_, 405, _}, _, _}} = httpc:request(post, {url(Config, "/debug/pprof/profile"), [],
                                                     "text/plain", ""}, [], []),
    %% A run already holding the node: said so.
    Self = self(),
    Runner = spawn(fun() -> Self ! {ran, eflambe:apply({timer, sleep, [1500]}, [{return, flamegraph}])} end),
    eflambe_test_util:wait_until(fun() -> eflambe_tracer:running_session() =/= undefined end),
    ?assertMatch({409, _}, http_get(url(Config, "/debug/pprof/profile?seconds=1"))),
    receive {ran, _} -> ok after 20000 -> exit(Runner, kill) end.

%% Bound to 127.0.0.1: another address of this machine is refused.
this_machine_only(Config) ->
    {ok, Ifs} = inet:getifaddrs(),
    Others = [A || {_, Props} <- Ifs, {addr, A} <- Props, tuple_size(A) =:= 4,
                   element(1, A) =/= 127],
    case Others of
        [] ->
            {skip, "this machine has no address but loopback"};
        [Other | _] ->
            ?assertEqual({error, econnrefused},
                         gen_tcp:connect(Other, ?config(port, Config), [], 5000))
    end.

%% Each endpoint keeps its own limits.
two_endpoints(Config) ->
    {ok, Other} = eflambe_http:start([{port, 0}, {max_seconds, 40}]),
    try
        OtherUrl = "http://127.0.0.1:" ++ integer_to_list(eflambe_http:port(Other)),
        ?assertMatch({400, _}, http_get(url(Config, "/debug/pprof/profile?seconds=30"))),
        ?assertMatch({400, _}, http_get(OtherUrl ++ "/debug/pprof/profile?seconds=41")),
        Capture = "/debug/pprof/capture?mfa=lists:seq/2&timeout=",
        ?assertMatch({400, <<"timeout", _/binary>>}, http_get(url(Config, Capture ++ "30"))),
        ?assertMatch({400, <<"timeout", _/binary>>}, http_get(OtherUrl ++ Capture ++ "41"))
    after
        eflambe_http:stop(Other)
    end.

options(_Config) ->
    ?assertEqual({error, {bad_option, {port, -1}}}, eflambe_http:start([{port, -1}])),
    ?assertEqual({error, {bad_option, {ip, {1, 2, 3}}}}, eflambe_http:start([{ip, {1, 2, 3}}])),
    ?assertEqual({error, {bad_option, {max_seconds, 0}}}, eflambe_http:start([{max_seconds, 0}])),
    ?assertEqual({error, {bad_options, x}}, eflambe_http:start(x)).
