%% Time truth: the weights are the program's time, the tracing cost taken
%% out, checked against the untraced run of the same code.
-module(eflambe_time_SUITE).

-include_lib("stdlib/include/assert.hrl").

-export([all/0, init_per_suite/1, end_per_suite/1]).
-export([calibrated_costs/1, bif_and_calls_ranked_as_untraced/1, sort_job_near_untraced/1,
         cost_lines_in_archive/1, blocked_receive_waits/1, busy_processes_are_runnable/1,
         beside_busy_loops/1]).
-export([fib/1, bif_work/1, mixed/1, sort_job/1, blocked/0, three/0, work_1/0, work_2/0,
         work_3/0]).

all() ->
    [calibrated_costs, bif_and_calls_ranked_as_untraced, sort_job_near_untraced,
     cost_lines_in_archive, blocked_receive_waits, busy_processes_are_runnable,
     beside_busy_loops].

init_per_suite(Config) ->
    Config.

end_per_suite(_Config) ->
    ok.

fib(0) -> 0;
fib(1) -> 1;
fib(N) -> fib(N - 1) + fib(N - 2).

%% A few BIF calls doing all the work.
bif_work(L) ->
    [erlang:phash2(term_to_binary(L)) || _ <- lists:seq(1, 3)].

mixed(L) ->
    _ = bif_work(L),
    fib(18).

sort_job(L) ->
    S = lists:sort(L),
    M = lists:map(fun(X) -> X * 2 end, S),
    maps:from_list([{X, X} || X <- M]).

%% The node's figures: every pair of calls and returns measured.
calibrated_costs(_Config) ->
    Costs = eflambe_calibrate:costs(),
    ct:pal("costs ~p", [Costs]),
    [?assert(maps:get(K, Costs) > 0 andalso maps:get(K, Costs) < 5000)
     || K <- [call, return_to, {call, call}, {call, return_to}, {return_to, call},
              {return_to, return_to}]].

%% BIF-heavy work beside call-heavy work: untraced, the BIF part is about
%% 20 times the heavier; the traced run's raw time says the opposite (4-6
%% times), the compensated profile of the same run is at least 4 times
%% nearer the untraced ratio (idle 0.26-0.6: ranked as untraced; beside two
%% busy loops up to 1.35, where an event costs more than the node's
%% calibration measured). On the CPU only: the time off it is no
%% function's.
bif_and_calls_ranked_as_untraced(Config) ->
    L = lists:seq(1, 20000),
    Bif = untraced(fun() -> bif_work(L) end),
    Fib = untraced(fun() -> fib(18) end),
    Truth = Fib / Bif,
    {Comp, Raw} = both_times(Config, {?MODULE, mixed, [L]}),
    Ratio = fun(F) -> under(F, <<"fib/1">>) / max(1, under(F, <<"bif_work/1">>)) end,
    ct:pal("untraced: bif part ~b us, fib(18) ~b us (fib/bif ~.3f); profile fib/bif: "
           "compensated ~.3f, raw ~.3f", [Bif, Fib, Truth, Ratio(Comp), Ratio(Raw)]),
    ?assert(Truth < 1),
    ?assert(Ratio(Raw) / Ratio(Comp) >= 4).

%% A sort/map/maps job: its time on the CPU, compensated, is far nearer the
%% untraced duration than the raw time of the same run (1.1-2.0x the
%% untraced time seen idle, 3.3x once beside two busy loops; 5x allowed).
sort_job_near_untraced(Config) ->
    R = [rand:uniform(1000000) || _ <- lists:seq(1, 50000)],
    Untraced = untraced(fun() -> sort_job(R) end),
    {Comp, Raw} = both_times(Config, {?MODULE, sort_job, [R]}),
    C = on_cpu(Comp),
    T = on_cpu(Raw),
    ct:pal("sort job: untraced ~b us, profiled, on the CPU: ~b us compensated, ~b us raw",
           [Untraced, C, T]),
    ?assert(C < T / 3),
    ?assert(C =< 5 * Untraced).

%% The archive says what it took out, a replay with {compensate, false}
%% gives the raw time back, and the default rings (20-40 ms of a busy
%% scheduler's events) hold a call of 7 ms that the flusher could not
%% drain at all.
cost_lines_in_archive(Config) ->
    Archive = filename:join(proplists:get_value(priv_dir, Config), "cost.eftrace"),
    _ = file:delete(Archive),
    {ok, _} = eflambe:apply({?MODULE, fib, [18]}, [{archive, Archive}]),
    {ok, Meta} = eflambe_tracer:archive_header(Archive),
    ?assertMatch({match, _}, re:run(Meta, <<"^cost_call_call_ns=[0-9]+$">>, [multiline])),
    {ok, Comp} = eflambe:replay(Archive, [{return, flamegraph}]),
    {ok, Raw} = eflambe:replay(Archive, [{return, flamegraph}, {compensate, false}]),
    {ok, _, #{compensated_us := Compensated, dropped := Dropped, events := Events}} =
        eflambe_tracer:fold(Archive, brendan_gregg, false, #{max_depth => 1024, recursion => exact}),
    ?assert(Compensated > 0),
    ct:pal("on the CPU ~b us compensated, ~b us raw, ~b us taken out",
           [on_cpu(Comp), on_cpu(Raw), Compensated]),
    %% (Each line's microseconds are rounded on their own.)
    ?assert(abs(total(Raw) - total(Comp) - Compensated) =< length(lines(Raw)) + length(lines(Comp))),
    ?assertEqual(0, Dropped),
    ?assert(Events > 10000).

%% One traced run of MFA, folded with the tracing cost taken out and not.
both_times(Config, {M, F, A}) ->
    Archive = filename:join(proplists:get_value(priv_dir, Config), "both.eftrace"),
    _ = file:delete(Archive),
    {ok, _} = eflambe:apply({M, F, A}, [{archive, Archive}]),
    {ok, Comp} = eflambe:replay(Archive, [{return, flamegraph}]),
    {ok, Raw} = eflambe:replay(Archive, [{return, flamegraph}, {compensate, false}]),
    {Comp, Raw}.

blocked() ->
    receive after 30 -> ok end.

%% Work of 1, 2 and 3 units in three processes at once, each in a function
%% of its own (BIF work: what tracing costs barely matters).
three() ->
    Self = self(),
    Ps = [spawn(fun() -> ?MODULE:F(), Self ! {done, self()} end) || F <- [work_1, work_2, work_3]],
    [receive {done, P} -> ok end || P <- Ps],
    ok.

%% (Body calls: a tail call would put units/1 in their place.)
work_1() -> units(1), 1.
work_2() -> units(2), 2.
work_3() -> units(3), 3.

units(K) ->
    L = lists:seq(1, 2000),
    _ = [erlang:phash2(term_to_binary(L)) || _ <- lists:seq(1, K * 400)],
    ok.

%% A process blocked 30 ms in a receive waited 30 ms (sleep: 30.3 ms seen
%% idle), and was never ready to run meanwhile. On a loaded machine the
%% wait for a scheduler after its timeout, which no event dates, stays in
%% sleep: 0.1 to 0.5 s more seen beside two busy loops; not bounded here.
blocked_receive_waits(_Config) ->
    blocked_waits(1000000).

%% (A process woken by its timeout while the cores are busy waits for a
%% scheduler too: that wait, which no event dates, stays in sleep.)
blocked_waits(AtMost) ->
    {ok, Folded} = eflambe:apply({?MODULE, blocked, []}, [{return, flamegraph}]),
    Sleep = ending(Folded, <<"sleep">>),
    Runnable = ending(Folded, <<"runnable">>),
    ct:pal("~s", [Folded]),
    ?assert(Sleep >= 29000 andalso Sleep =< AtMost),
    ?assertEqual(0, Runnable).

%% Three processes busy at once (more than the schedulers): each is ready
%% to run while another runs (runnable), none waits (sleep), and their time
%% on the CPU is in the proportions of their work (1:2:3, within 15%; 1-8%
%% seen here, with one scheduler and two, idle and beside two busy loops).
busy_processes_are_runnable(_Config) ->
    cpu_shares(0.15).

cpu_shares(Within) ->
    {ok, Folded} = eflambe:apply({?MODULE, three, []}, [{return, flamegraph}]),
    Lines = lines(Folded),
    Of = fun(F) -> [{binary:split(S, <<";">>, [global]), N} || {S, N} <- Lines,
                                                               binary:match(S, F) =/= nomatch] end,
    OnCpu = [lists:sum([N || {Frames, N} <- Of(F),
                             not lists:member(lists:last(Frames), [<<"sleep">>, <<"runnable">>, <<"[os preempted]">>])])
             || F <- [<<"work_1/0">>, <<"work_2/0">>, <<"work_3/0">>]],
    Runnable = [lists:sum([N || {Frames, N} <- Of(F), lists:last(Frames) =:= <<"runnable">>])
                || F <- [<<"work_1/0">>, <<"work_2/0">>, <<"work_3/0">>]],
    [One | _] = OnCpu,
    Shares = [X / One || X <- OnCpu],
    ct:pal("on the CPU ~p us (shares ~p), runnable ~p us", [OnCpu, Shares, Runnable]),
    [?assert(abs(Share - Want) =< Within * Want) || {Share, Want} <- lists:zip(Shares, [1, 2, 3])],
    ?assert(lists:sum(Runnable) > 0),
    ?assertEqual(0, ending(Folded, <<"work_1/0;sleep">>) + ending(Folded, <<"work_2/0;sleep">>)
                 + ending(Folded, <<"work_3/0;sleep">>)).

%% The same with two programs busy beside the node, as on a production
%% machine: the time the OS gives them is the OS's ([os preempted]), not
%% the Erlang code's (shares within 30% here: 1-8% seen, once 30%); the
%% blocked receive still only waits.
beside_busy_loops(_Config) ->
    Loops = [string:trim(os:cmd("yes > /dev/null 2>&1 < /dev/null & echo $!")) || _ <- [1, 2]],
    try
        timer:sleep(100),
        cpu_shares(0.3),
        blocked_waits(1000000)
    after
        _ = [os:cmd("kill " ++ Pid) || Pid <- Loops]
    end.

%% Time on the CPU: the stacks that end in none of the frames of time off it.
on_cpu(Folded) ->
    lists:sum([N || {Stack, N} <- lines(Folded), not off_cpu(Stack)]).

%% Time of the stacks ending in Frame (a frame or the end of a stack).
ending(Folded, Frame) ->
    lists:sum([N || {Stack, N} <- lines(Folded),
                    binary:longest_common_suffix([Stack, Frame]) =:= byte_size(Frame)]).

%% The least of 5 untraced runs, in microseconds.
untraced(F) ->
    lists:min([begin
                   T0 = erlang:monotonic_time(microsecond),
                   _ = F(),
                   erlang:monotonic_time(microsecond) - T0
               end || _ <- lists:seq(1, 5)]).

lines(Folded) ->
    [begin
         [Stack, N] = string:split(Line, <<" ">>, trailing),
         {Stack, binary_to_integer(N)}
     end || Line <- binary:split(Folded, <<"\n">>, [global, trim_all])].

total(Folded) ->
    lists:sum([N || {_, N} <- lines(Folded)]).

%% Time on the CPU in stacks that name Fun.
under(Folded, Fun) ->
    lists:sum([N || {Stack, N} <- lines(Folded), binary:match(Stack, Fun) =/= nomatch,
                    not off_cpu(Stack)]).

off_cpu(Stack) ->
    lists:any(fun(Off) -> binary:longest_common_suffix([Stack, Off]) =:= byte_size(Off) end,
              [<<";sleep">>, <<";runnable">>, <<";[os preempted]">>]).

