%% eflambe:sample on real busy and idle processes.
-module(eflambe_sample_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(W, eflambe_workload).

all() ->
    [busy_and_idle, new_processes, only_some_pids, svg_title_and_replay, stop_early, bad_options].

busy() ->
    spawn(fun Loop() -> _ = ?W:two(15), Loop() end).

totals(Folded) ->
    lists:foldl(fun({[P | _], N}, M) -> maps:update_with(P, fun(X) -> X + N end, N, M) end,
                #{}, eflambe_test_util:parse(Folded)).

name(Pid) -> list_to_binary(pid_to_list(Pid)).

%% Two busy processes are each on a CPU (or waiting for one) the whole
%% time; an idle one is never sampled. Each sample weighs one period. On a
%% loaded machine the sampler itself gets fewer ticks (two busy loops beside
%% the suite: 356 of the 600 ms), but the two busy processes are in every
%% tick it takes: their totals are equal.
busy_and_idle(_Config) ->
    [A, B] = [busy(), busy()],
    Idle = spawn(fun() -> receive stop -> ok end end),
    Depth = erlang:system_flag(backtrace_depth, 8),
    {ok, Folded} = eflambe:sample([{duration, 600}, {hz, 200}, {return, flamegraph}]),
    [exit(P, kill) || P <- [A, B, Idle]],
    ?assertEqual(8, erlang:system_flag(backtrace_depth, Depth)),
    Totals = totals(Folded),
    ct:pal("~p", [Totals]),
    [TA, TB] = [maps:get(name(P), Totals, 0) || P <- [A, B]],
    [?assert(T > 250000 andalso T < 800000) || T <- [TA, TB]],
    ?assert(abs(TA - TB) =< 2 * 5000),
    ?assertNot(maps:is_key(name(Idle), Totals)),
    Lines = eflambe_test_util:parse(Folded),
    ?assert(lists:any(fun({F, _}) -> lists:member(<<"eflambe_workload:slow/1">>, F) end, Lines)).

%% The sampler keeps its list of processes between ticks: processes born
%% after the run started, each busy 20 ms and gone, are sampled all the same.
new_processes(_Config) ->
    Self = self(),
    spawn(fun() ->
                  eflambe_test_util:wait_until(fun() -> eflambe_tracer:running_session() =/= undefined end),
                  timer:sleep(100),
                  Self ! {born, short_lived(erlang:monotonic_time(millisecond) + 500, [])}
          end),
    {ok, Folded} = eflambe:sample([{duration, 800}, {hz, 200}, {return, flamegraph}]),
    Born = receive {born, Pids} -> Pids end,
    Totals = totals(Folded),
    Sampled = lists:sum([maps:get(name(P), Totals, 0) || P <- Born]),
    ct:pal("~b processes, ~b us sampled", [length(Born), Sampled]),
    %% 500 ms of work, one process at a time: without listing processes
    %% again, none of it is sampled; on an idle machine about 495 ms, with
    %% two busy loops beside the suite 145 ms (the sampler gets fewer ticks).
    ?assert(Sampled > 50000).

short_lived(Until, Born) ->
    case erlang:monotonic_time(millisecond) >= Until of
        true ->
            Born;
        false ->
            {P, Ref} = spawn_monitor(fun() -> busy_for(erlang:monotonic_time(millisecond) + 20) end),
            receive {'DOWN', Ref, process, P, _} -> ok end,
            short_lived(Until, [P | Born])
    end.

busy_for(Until) ->
    _ = ?W:two(12),
    case erlang:monotonic_time(millisecond) >= Until of
        true -> ok;
        false -> busy_for(Until)
    end.

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
                  eflambe_test_util:wait_until(fun() -> eflambe_tracer:running_session() =/= undefined end),
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
