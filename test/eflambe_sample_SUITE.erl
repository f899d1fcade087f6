%% eflambe:sample on real busy and idle processes.
-module(eflambe_sample_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(W, eflambe_workload).

all() ->
    [busy_and_idle, only_some_pids, svg_title_and_replay, stop_early, bad_options].

busy() ->
    spawn(fun Loop() -> _ = ?W:two(15), Loop() end).

totals(Folded) ->
    lists:foldl(fun({[P | _], N}, M) -> maps:update_with(P, fun(X) -> X + N end, N, M) end,
                #{}, eflambe_test_util:parse(Folded)).

name(Pid) -> list_to_binary(pid_to_list(Pid)).

%% Two busy processes are each on a CPU (or waiting for one) the whole
%% time; an idle one is never sampled. Each sample weighs one period.
busy_and_idle(_Config) ->
    [A, B] = [busy(), busy()],
    Idle = spawn(fun() -> receive stop -> ok end end),
    Depth = erlang:system_flag(backtrace_depth, 8),
    {ok, Folded} = eflambe:sample([{duration, 600}, {hz, 200}, {return, flamegraph}]),
    [exit(P, kill) || P <- [A, B, Idle]],
    ?assertEqual(8, erlang:system_flag(backtrace_depth, Depth)),
    Totals = totals(Folded),
    ct:pal("~p", [Totals]),
    [?assert(maps:get(name(P), Totals, 0) > 400000 andalso maps:get(name(P), Totals, 0) < 800000)
     || P <- [A, B]],
    ?assertNot(maps:is_key(name(Idle), Totals)),
    Lines = eflambe_test_util:parse(Folded),
    ?assert(lists:any(fun({F, _}) -> lists:member(<<"eflambe_workload:slow/1">>, F) end, Lines)).

only_some_pids(_Config) ->
    [A, B] = [busy(), busy()],
    {ok, Folded} = eflambe:sample([{duration, 300}, {pids, [A]}, {return, flamegraph}]),
    [exit(P, kill) || P <- [A, B]],
    ?assertEqual([name(A)], maps:keys(totals(Folded))).

svg_title_and_replay(Config) ->
    A = busy(),
    Archive = filename:join(?config(priv_dir, Config), "sample.eftrace"),
    {ok, Svg} = eflambe:sample([{duration, 300}, {hz, 50}, {output_format, svg},
                                {return, flamegraph}, {archive, Archive}]),
    exit(A, kill),
    ?assertMatch({match, _}, re:run(Svg, <<"Flame graph of [^ ]+ at 50 Hz">>)),
    ?assertEqual({ok, Svg}, eflambe:replay(Archive, [{output_format, svg}, {return, flamegraph}])).

stop_early(_Config) ->
    A = busy(),
    Self = self(),
    spawn(fun() ->
                  eflambe_test_util:wait_until(fun() -> whereis(eflambe_running) =/= undefined end),
                  timer:sleep(200),
                  Self ! {stopped, eflambe:stop()}
          end),
    T0 = erlang:monotonic_time(millisecond),
    {ok, Folded} = eflambe:sample([{duration, 60000}, {return, flamegraph}]),
    ?assert(erlang:monotonic_time(millisecond) - T0 < 5000),
    receive {stopped, ok} -> ok end,
    exit(A, kill),
    ?assert(maps:is_key(name(A), totals(Folded))).

bad_options(_Config) ->
    ?assertMatch({error, {bad_hz, 0, _}}, eflambe:sample([{hz, 0}])),
    ?assertMatch({error, {bad_hz, 5000, _}}, eflambe:sample([{hz, 5000}])),
    ?assertMatch({error, {bad_duration, -1, _}}, eflambe:sample([{duration, -1}])),
    ?assertMatch({error, {bad_pids, [x], _}}, eflambe:sample([{pids, [x]}])),
    ?assertMatch({error, {unknown_option, {exclude, []}}}, eflambe:sample([{exclude, []}])),
    ?assertMatch({error, {bad_return, value, _}}, eflambe:sample([{return, value}])).
