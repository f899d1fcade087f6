%% @doc A pull endpoint for continuous profilers (Parca, Pyroscope) and
%% `go tool pprof', served by OTP's inets httpd:
%%
%% `GET /debug/pprof/profile?seconds=N' samples the node (or, with
%% `nodes=connected', the cluster) for N seconds and answers with a pprof
%% profile (gzipped profile.proto), the convention Go's net/http/pprof set.
%% `hz=H' sets the rate (default 97).
%%
%% `GET /debug/pprof/capture?mfa=M:F/A&count=N&timeout=S' captures the
%% next N calls of M:F/A (a function already loaded) made by any process,
%% waiting at most S seconds, and answers with one pprof profile of them.
%%
%% Bound to 127.0.0.1 unless told otherwise; one request at a time (another
%% meanwhile gets 429 Too Many Requests); seconds, count and timeout
%% bounded; atoms are never made from a request.
-module(eflambe_http).

-export([start/0, start/1, stop/1, port/1]).
%% httpd's callback.
-export([do/1]).

-include_lib("inets/include/httpd.hrl").

%% The name the request being served holds.
-define(BUSY, eflambe_http_request).
-define(DEFAULT_PORT, 7070).

-type option() :: {port, inet:port_number()}
                | {ip, inet:ip_address()}
                | {max_seconds, pos_integer()}
                | {max_count, pos_integer()}.
%% `port' (default 7070; 0: any free one, see port/1), `ip' (default
%% {127,0,0,1}: this machine only), `max_seconds' (default 300: the most
%% a request may sample or wait), `max_count' (default 1000: the most
%% calls a capture may take).

-export_type([option/0]).

-type limits() :: #{max_seconds := pos_integer(), max_count := pos_integer()}.

%% @equiv start([])
-spec start() -> {ok, pid()} | {error, term()}.
start() ->
    start([]).

%% @doc Starts the endpoint: `{ok, Server}' (for port/1 and stop/1).
-spec start([option()]) -> {ok, pid()} | {error, term()}.
start(Options) ->
    case options(Options, #{port => ?DEFAULT_PORT, ip => {127, 0, 0, 1},
                            max_seconds => 300, max_count => 1000}) of
        {ok, #{port := Port, ip := Ip} = Opts} ->
            Limits = maps:with([max_seconds, max_count], Opts),
            case application:ensure_all_started(inets) of
                {ok, _} ->
                    Root = code:priv_dir(eflambe),
                    case inets:start(httpd, [{port, Port}, {bind_address, Ip},
                                             {ipfamily, family(Ip)},
                                             {server_name, "eflambe"}, {server_root, Root},
                                             {document_root, Root}, {modules, [?MODULE]},
                                             {keep_alive, false}, {max_clients, 8}]) of
                        {ok, Server} ->
                            %% Each endpoint's limits, by its port (a request
                            %% before they are set is told to come back).
                            persistent_term:put({?MODULE, limits, port(Server)}, Limits),
                            {ok, Server};
                        {error, _} = Error ->
                            Error
                    end;
                {error, _} = Error ->
                    Error
            end;
        {error, _} = Error ->
            Error
    end.

%% @doc The port the endpoint listens on.
-spec port(pid()) -> inet:port_number().
port(Server) ->
    [{port, Port}] = httpd:info(Server, [port]),
    Port.

%% @doc Stops the endpoint.
-spec stop(pid()) -> ok | {error, term()}.
stop(Server) ->
    Port = try port(Server) catch _:_ -> undefined end,
    Stopped = inets:stop(httpd, Server),
    _ = persistent_term:erase({?MODULE, limits, Port}),
    Stopped.

-spec family(inet:ip_address()) -> inet | inet6.
family(Ip) when tuple_size(Ip) =:= 4 -> inet;
family(_) -> inet6.

-spec options(list(), map()) -> {ok, map()} | {error, term()}.
options([], Opts) ->
    {ok, Opts};
options([{port, P} | Rest], Opts) when is_integer(P), P >= 0, P =< 65535 ->
    options(Rest, Opts#{port := P});
options([{ip, Ip} | Rest], Opts) when tuple_size(Ip) =:= 4; tuple_size(Ip) =:= 8 ->
    case inet:ntoa(Ip) of
        {error, einval} -> {error, {bad_option, {ip, Ip}}};
        _ -> options(Rest, Opts#{ip := Ip})
    end;
options([{Limit, N} | Rest], Opts) when (Limit =:= max_seconds orelse Limit =:= max_count),
                                        is_integer(N), N >= 1 ->
    options(Rest, Opts#{Limit := N});
options([Other | _], _Opts) ->
    {error, {bad_option, Other}};
options(Other, _Opts) ->
    {error, {bad_options, Other}}.

%% ---- requests -----------------------------------------------------------

%% One request: a profile, or why not.
-spec do(#mod{}) -> {proceed, list()}.
do(#mod{method = "GET", request_uri = Uri, config_db = Config}) ->
    {Path, Query} = split(Uri),
    case persistent_term:get({?MODULE, limits, httpd_util:lookup(Config, port)}, undefined) of
        undefined -> {proceed, respond({503, "starting: try again\n"})};
        Limits -> {proceed, respond(answer(Path, Query, Limits))}
    end;
do(#mod{}) ->
    {proceed, respond({405, "only GET is served\n"})}.

-spec respond({pos_integer(), iodata()} | {ok, binary()}) -> list().
respond({ok, Profile}) ->
    [{response, {response, [{code, 200}, {content_type, "application/octet-stream"},
                            {content_length, integer_to_list(byte_size(Profile))},
                            {"content-disposition", "attachment; filename=\"profile.pb.gz\""}],
                 [Profile]}}];
respond({Code, Text}) ->
    Body = iolist_to_binary(Text),
    [{response, {response, [{code, Code}, {content_type, "text/plain"},
                            {content_length, integer_to_list(byte_size(Body))}],
                 [Body]}}].

%% The path and the query's pairs (a key without a value: ""), or bad.
-spec split(string()) -> {string(), [{string(), string()}] | bad}.
split(Uri) ->
    case string:split(Uri, "?") of
        [Path, Query] ->
            case uri_string:dissect_query(Query) of
                Pairs when is_list(Pairs) ->
                    {Path, [{K, case V of true -> ""; _ -> V end} || {K, V} <- Pairs,
                                                                    is_list(K)]};
                _ ->
                    {Path, bad}
            end;
        [Path] ->
            {Path, []}
    end.

-spec answer(string(), [{string(), string()}] | bad, limits()) ->
          {ok, binary()} | {pos_integer(), iodata()}.
answer(Path, Query, Limits) when is_list(Query) ->
    case Path of
        "/debug/pprof/profile" -> one_at_a_time(fun() -> profile(Query, Limits) end);
        "/debug/pprof/capture" -> one_at_a_time(fun() -> capture(Query, Limits) end);
        _ -> {404, "not found: /debug/pprof/profile?seconds=N or "
                   "/debug/pprof/capture?mfa=M:F/A&count=N&timeout=S\n"}
    end;
answer(_Path, _BadQuery, _Limits) ->
    {400, "bad query string\n"}.

%% The request holds the endpoint's one name while it runs.
-spec one_at_a_time(fun(() -> {ok, binary()} | {pos_integer(), iodata()})) ->
          {ok, binary()} | {pos_integer(), iodata()}.
one_at_a_time(Run) ->
    try register(?BUSY, self()) of
        true ->
            try Run()
            after unregister(?BUSY)
            end
    catch
        error:badarg -> {429, "a profile is being taken: try again when it is done\n"}
    end.


-spec profile([{string(), string()}], limits()) -> {ok, binary()} | {pos_integer(), iodata()}.
profile(Query, #{max_seconds := MaxSeconds}) ->
    checked([fun() -> number(Query, "seconds", 30, 1, MaxSeconds) end,
           fun() -> number(Query, "hz", 97, 1, 1000) end,
           fun() -> cluster(Query) end],
          fun([Seconds, Hz, Nodes]) ->
                  Options = [{duration, Seconds * 1000}, {hz, Hz}, {output_format, pprof},
                             {return, flamegraph} | Nodes],
                  case eflambe:sample(Options) of
                      {ok, Profile} -> {ok, Profile};
                      {ok, Profile, _Failed} -> {ok, Profile};
                      {error, Why} -> refused(Why)
                  end
          end).

-spec capture([{string(), string()}], limits()) -> {ok, binary()} | {pos_integer(), iodata()}.
capture(Query, #{max_seconds := MaxSeconds, max_count := MaxCount}) ->
    checked([fun() -> mfa(proplists:get_value("mfa", Query)) end,
           fun() -> number(Query, "count", 1, 1, MaxCount) end,
           fun() -> number(Query, "timeout", 30, 1, MaxSeconds) end,
           fun() -> cluster(Query) end],
          fun([MFA, Count, Timeout, Nodes]) ->
                  %% The calls' folded stacks, then one pprof profile of all.
                  Options = [{timeout, Timeout * 1000}, {return, flamegraph} | Nodes],
                  case eflambe:capture(MFA, Count, Options) of
                      {ok, Calls} -> pprof(Calls);
                      {ok, Calls, _Failed} -> pprof(Calls);
                      {error, Why} -> refused(Why)
                  end
          end).

-spec pprof([binary()]) -> {ok, binary()} | {pos_integer(), iodata()}.
pprof(Calls) ->
    case eflambe_tracer:convert_folded(iolist_to_binary(Calls), pprof,
                                       #{meta => <<"mode=capture\n">>}) of
        {ok, Profile, _Info} when is_binary(Profile) -> {ok, Profile};
        {error, Why} -> {500, io_lib:format("~p~n", [Why])}
    end.

%% Each check in turn; the first that fails answers.
-spec checked([fun(() -> {ok, term()} | {pos_integer(), iodata()})],
            fun(([term()]) -> {ok, binary()} | {pos_integer(), iodata()})) ->
          {ok, binary()} | {pos_integer(), iodata()}.
checked(Checks, Then) ->
    checked(Checks, Then, []).

-spec checked([fun(() -> {ok, term()} | {pos_integer(), iodata()})],
              fun(([term()]) -> {ok, binary()} | {pos_integer(), iodata()}), [term()]) ->
          {ok, binary()} | {pos_integer(), iodata()}.
checked([], Then, Values) ->
    Then(lists:reverse(Values));
checked([Check | Rest], Then, Values) ->
    case Check() of
        {ok, Value} -> checked(Rest, Then, [Value | Values]);
        Bad -> Bad
    end.

-spec number([{string(), string()}], string(), integer(), integer(), integer()) ->
          {ok, integer()} | {400, iodata()}.
number(Query, Key, Default, Min, Max) ->
    case proplists:get_value(Key, Query) of
        undefined ->
            {ok, min(Default, Max)};
        Text ->
            case string:to_integer(Text) of
                {N, ""} when N >= Min, N =< Max -> {ok, N};
                _ -> {400, io_lib:format("~s: a whole number from ~b to ~b~n", [Key, Min, Max])}
            end
    end.

-spec cluster([{string(), string()}]) -> {ok, list()} | {400, iodata()}.
cluster(Query) ->
    case proplists:get_value("nodes", Query) of
        undefined -> {ok, []};
        "connected" -> {ok, [{nodes, connected}]};
        _ -> {400, "nodes: only nodes=connected\n"}
    end.

%% M:F/A of a module loaded and a function it has: no atom is made here.
-spec mfa(string() | undefined) -> {ok, mfa()} | {400, iodata()}.
mfa(undefined) ->
    {400, "mfa=Module:Function/Arity is needed\n"};
mfa(Text) ->
    Bad = {400, "mfa: Module:Function/Arity of a loaded module's function\n"},
    case string:split(Text, ":") of
        [M, FA] ->
            case string:split(FA, "/", trailing) of
                [F, A] ->
                    try {list_to_existing_atom(M), list_to_existing_atom(F), list_to_integer(A)} of
                        {Mod, Fun, Arity} = MFA ->
                            case code:is_loaded(Mod) =/= false andalso
                                lists:member({Fun, Arity}, Mod:module_info(functions)) of
                                true -> {ok, MFA};
                                false -> Bad
                            end
                    catch
                        error:badarg -> Bad
                    end;
                _ ->
                    Bad
            end;
        _ ->
            Bad
    end.

%% eflambe said no: a run already holds the node, or the request was wrong.
-spec refused(term()) -> {pos_integer(), iodata()}.
refused(Why) ->
    Code = case Why of
               already_running -> 409;
               {already_running, _} -> 409;
               {tracer_in_use, _} -> 409;
               timeout -> 504;
               no_calls_captured -> 504;
               {no_calls_captured, _} -> 504;
               _ -> 500
           end,
    {Code, io_lib:format("~p~n", [Why])}.
