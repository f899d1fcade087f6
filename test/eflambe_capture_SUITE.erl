%% eflambe:capture with real processes: who gets captured, how many, how a
%% run ends, and that nothing stays armed afterwards.
-module(eflambe_capture_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(W, eflambe_workload).

all() ->
    [two_of_three_callers, recursion_counts_once, exception_marked, killed_mid_call,
     timeout_without_calls, timeout_with_some_calls, stop_from_another_process,
     already_running, bad_input, tracer_in_use, caller_dies, every_k, every_k_recursive,
     target_reloaded,
     results_as_files, spawned_processes, limit_ends_capture, many_calls, lazy_arming,
     calls_ranked, keep_slowest].

end_per_testcase(_Case, _Config) ->
    assert_nothing_armed().

%% ---- helpers ------------------------------------------------------------

assert_nothing_armed() ->
    [begin
         ?assertEqual({traced, false}, erlang:trace_info(MFA, traced)),
         ?assertEqual({meta, false}, erlang:trace_info(MFA, meta))
     end || MFA <- [{?W, two, 1}, {?W, fib, 1}, {?W, slow, 1}, {?W, raiser, 0},
                    {?W, waiter, 0}]],
    ?assertEqual({traced, false}, erlang:trace_info(on_load, traced)),
    ?assertEqual([], [P || P <- processes(), erlang:trace_info(P, tracer) =/= {tracer, []},
                           erlang:trace_info(P, tracer) =/= undefined]),
    ?assertEqual(undefined, eflambe_tracer:running_session()),
    ?assertEqual(undefined, whereis(eflambe_running)).

parse(Folded) ->
    eflambe_test_util:parse(Folded).

pids(Folded) ->
    lists:usort([hd(Frames) || {Frames, _} <- parse(Folded)]).

roots(Folded) ->
    lists:usort([hd(tl(Frames)) || {Frames, _} <- parse(Folded)]).

async_capture(MFA, N, Opts) ->
    eflambe_test_util:async_capture(MFA, N, Opts).

wait_armed(MFA) ->
    eflambe_test_util:wait_armed(MFA).

wait_until(Fun) ->
    eflambe_test_util:wait_until(Fun).

%% A process that calls Fun when told to.
caller(Fun) ->
    Self = self(),
    spawn(fun() -> receive go -> Self ! {done, self(), Fun()} end end).

%% ---- cases --------------------------------------------------------------

%% Three processes call the target, an unrelated one is busy with the same
%% inner function: exactly two results, each one process, rooted at the
%% target, none from the busy process.
two_of_three_callers(_Config) ->
    Busy = spawn(fun Loop() -> ?W:fib(12), receive stop -> ok after 0 -> Loop() end end),
    Wait = async_capture({?W, two, 1}, 2, [{return, flamegraph}]),
    Callers = [caller(fun() -> ?W:two(14) end) || _ <- [1, 2, 3]],
    [C ! go || C <- Callers],
    [receive {done, C, _} -> ok end || C <- Callers],
    {ok, Results} = Wait(),
    Busy ! stop,
    ?assertEqual(2, length(Results)),
    CallerPids = [list_to_binary(pid_to_list(C)) || C <- Callers],
    [begin
         [Pid] = pids(R),
         ?assert(lists:member(Pid, CallerPids)),
         ?assertEqual([<<"eflambe_workload:two/1">>], roots(R)),
         ?assert(lists:any(fun({F, _}) -> lists:member(<<"eflambe_workload:fib/1">>, F) end,
                           parse(R)))
     end || R <- Results],
    ?assertNotEqual(pids(hd(Results)), pids(lists:last(Results))),
    BusyPid = list_to_binary(pid_to_list(Busy)),
    ?assertEqual([], [R || R <- Results, lists:member(BusyPid, pids(R))]).

%% Capturing a recursive function: its recursion is one call of the budget
%% (N = 1 gives one result even though fib calls itself); its frames are as
%% deep as the recursion was (fib(15) down to fib(1); the deepest few may
%% round to 0 us), or one with {recursion, collapse}.
recursion_counts_once(_Config) ->
    Wait = async_capture({?W, fib, 1}, 1, [{return, flamegraph}]),
    C = caller(fun() -> ?W:fib(15) end),
    C ! go,
    receive {done, C, 610} -> ok end,
    {ok, [R]} = Wait(),
    Lines = parse(R),
    ?assertEqual([<<"eflambe_workload:fib/1">>], roots(R)),
    Depth = lists:max([length(F) - 1 || {F, _} <- Lines, lists:last(F) =/= <<"gc">>,
                                        not lists:member(lists:last(F), [<<"sleep">>, <<"runnable">>, <<"[os preempted]">>])]),
    ?assert(Depth >= 12 andalso Depth =< 15),
    Wait2 = async_capture({?W, fib, 1}, 1, [{return, flamegraph}, {recursion, collapse}]),
    C2 = caller(fun() -> ?W:fib(15) end),
    C2 ! go,
    receive {done, C2, 610} -> ok end,
    {ok, [R2]} = Wait2(),
    ?assertEqual(2, lists:max([length(F) || {F, _} <- parse(R2), lists:last(F) =/= <<"gc">>,
                                            not lists:member(lists:last(F), [<<"sleep">>, <<"runnable">>, <<"[os preempted]">>])])).

exception_marked(_Config) ->
    Wait = async_capture({?W, raiser, 0}, 1, [{return, flamegraph}]),
    C = caller(fun() -> catch ?W:raiser() end),
    C ! go,
    {ok, [R]} = Wait(),
    [Pid] = pids(R),
    ?assertEqual(list_to_binary(pid_to_list(C) ++ " (exception)"), Pid).

%% A process killed inside the target ends its capture, marked as raised.
killed_mid_call(_Config) ->
    Wait = async_capture({?W, waiter, 0}, 1, [{return, flamegraph}]),
    C = caller(fun() -> ?W:waiter() end),
    C ! go,
    timer:sleep(100),
    exit(C, kill),
    {ok, [R]} = Wait(),
    ?assertEqual([list_to_binary(pid_to_list(C) ++ " (exception)")], pids(R)),
    ?assert(lists:any(fun({F, _}) -> lists:last(F) =:= <<"sleep">> end, parse(R))).

timeout_without_calls(_Config) ->
    T0 = erlang:monotonic_time(millisecond),
    ?assertEqual({error, timeout}, eflambe:capture({?W, two, 1}, 1, [{timeout, 300}])),
    ?assert(erlang:monotonic_time(millisecond) - T0 >= 300).

%% Two calls end, a third is still inside at the deadline: the two, then
%% the third as far as it went, marked unfinished.
timeout_with_some_calls(_Config) ->
    Wait = async_capture({?W, waiter, 0}, 3, [{return, flamegraph}, {timeout, 1500}]),
    Cs = [caller(fun() -> ?W:waiter() end) || _ <- [1, 2, 3]],
    [C ! go || C <- Cs],
    timer:sleep(200),
    [C ! stop || C <- lists:sublist(Cs, 2)],
    {ok, Results} = Wait(),
    ?assertEqual(3, length(Results)),
    Last = lists:last(Cs),
    ?assertEqual([list_to_binary(pid_to_list(Last) ++ " (unfinished)")], pids(lists:last(Results))),
    [?assertNotMatch({match, _}, re:run(R, "unfinished")) || R <- lists:sublist(Results, 2)],
    exit(Last, kill).

stop_from_another_process(_Config) ->
    Wait = async_capture({?W, two, 1}, 5, [{return, flamegraph}]),
    C = caller(fun() -> ?W:two(12) end),
    C ! go,
    receive {done, C, _} -> ok end,
    timer:sleep(50),
    ?assertEqual(ok, eflambe:stop()),
    ?assertMatch({ok, [_]}, Wait()),
    ?assertEqual({error, not_running}, eflambe:stop()).

already_running(_Config) ->
    Wait = async_capture({?W, two, 1}, 1, [{return, flamegraph}]),
    ?assertEqual({error, already_running}, eflambe:capture({?W, raiser, 0}, 1, [])),
    ?assertEqual({error, already_running}, eflambe:apply({?W, fib, [5]})),
    ok = eflambe:stop(),
    ?assertEqual({error, stopped}, Wait()).

bad_input(_Config) ->
    ?assertMatch({error, {cannot_load_module, no_such_module, _}},
                 eflambe:capture({no_such_module, f, 0})),
    ?assertEqual({error, {undefined_function, {?W, fib, 2}}}, eflambe:capture({?W, fib, 2})),
    %% A local function is fine: deep/0 is not exported.
    ?assertEqual({error, timeout}, eflambe:capture({?W, deep, 0}, 1, [{timeout, 10}])),
    ?assertMatch({error, {bad_count, 0, _}}, eflambe:capture({?W, fib, 1}, 0)),
    ?assertMatch({error, {bad_count, many, _}}, eflambe:capture({?W, fib, 1}, many)),
    ?assertMatch({error, {bad_function, {?W, fib}, _}}, eflambe:capture({?W, fib})),
    ?assertMatch({error, {unknown_option, {colour, red}}},
                 eflambe:capture({?W, fib, 1}, 1, [{colour, red}])),
    ?assertMatch({error, {bad_return, value, _}},
                 eflambe:capture({?W, fib, 1}, 1, [{return, value}])),
    ?assertMatch({error, {bad_timeout, -1, _}}, eflambe:capture({?W, fib, 1}, 1, [{timeout, -1}])),
    ?assertMatch({error, {bad_every, 0, _}}, eflambe:capture({?W, fib, 1}, 1, [{every, 0}])).

%% Another tracer on the node, or a pattern on the target: refused, and
%% left as it was.
tracer_in_use(_Config) ->
    Tracer = spawn(fun() -> receive stop -> ok end end),
    Traced = spawn(fun() -> receive stop -> ok end end),
    1 = erlang:trace(Traced, true, [send, {tracer, Tracer}]),
    ?assertEqual({error, {tracer_in_use, [Traced]}}, eflambe:capture({?W, two, 1})),
    ?assertEqual({tracer, Tracer}, erlang:trace_info(Traced, tracer)),
    erlang:trace(Traced, false, [all]),
    Traced ! stop,
    Tracer ! stop,
    1 = erlang:trace_pattern({?W, two, 1}, true, [local]),
    ?assertEqual({error, {target_already_traced, {?W, two, 1}}}, eflambe:capture({?W, two, 1})),
    ?assertEqual({traced, local}, erlang:trace_info({?W, two, 1}, traced)),
    1 = erlang:trace_pattern({?W, two, 1}, false, [local]).

%% The caller of capture dies: the run ends and everything is disarmed.
caller_dies(_Config) ->
    Pid = spawn(fun() -> eflambe:capture({?W, two, 1}, 1, []) end),
    wait_armed({?W, two, 1}),
    exit(Pid, kill),
    wait_until(fun() -> eflambe_tracer:running_session() =:= undefined end),
    wait_until(fun() -> erlang:trace_info({?W, two, 1}, meta) =:= {meta, false} end).

%% {every, 3}: of six sequential calls, the 1st and the 4th are captured.
every_k(_Config) ->
    Wait = async_capture({?W, fast, 1}, 2, [{return, flamegraph}, {every, 3}]),
    Cs = [caller(fun() -> ?W:fast(10 + I) end) || I <- lists:seq(1, 6)],
    [begin C ! go, receive {done, C, _} -> ok end end || C <- Cs],
    {ok, Results} = Wait(),
    Expected = [list_to_binary(pid_to_list(lists:nth(I, Cs))) || I <- [1, 4]],
    ?assertEqual(Expected, lists:append([pids(R) || R <- Results])).

%% {every, K} counts outermost calls only: the recursive calls of a skipped
%% call are not calls (once, each one counted: {every, 7} on fib gave
%% calls of 7 us and of 0 us beside whole ones of 4,400 us).
every_k_recursive(_Config) ->
    Wait = async_capture({?W, fib, 1}, 2, [{return, flamegraph}, {every, 3}]),
    Cs = [caller(fun() -> ?W:fib(12) end) || _ <- lists:seq(1, 6)],
    [begin C ! go, receive {done, C, _} -> ok end end || C <- Cs],
    {ok, Results} = Wait(),
    Expected = [list_to_binary(pid_to_list(lists:nth(I, Cs))) || I <- [1, 4]],
    ?assertEqual(Expected, lists:append([pids(R) || R <- Results])),
    %% Each one whole: fib(12) down to fib(1), 12 fib frames deep.
    [?assert(lists:max([length([F || F <- Frames, F =:= <<"eflambe_workload:fib/1">>])
                        || {Frames, _} <- parse(R)]) >= 11)
     || R <- Results],
    %% One process making the six calls: a skipped call's return ends the
    %% skip, so its 4th call is taken whole.
    Wait2 = async_capture({?W, fib, 1}, 2, [{return, flamegraph}, {every, 3}]),
    C = caller(fun() -> [?W:fib(12) || _ <- lists:seq(1, 6)] end),
    C ! go,
    {ok, Results2} = Wait2(),
    ?assertEqual(2, length(Results2)),
    [?assert(lists:max([length([F || F <- Frames, F =:= <<"eflambe_workload:fib/1">>])
                        || {Frames, _} <- parse(R)]) >= 11)
     || R <- Results2].

%% Reloading the target's module drops its patterns: the run says so.
target_reloaded(_Config) ->
    Forms = [{attribute, 1, module, eflambe_reload_target},
             {attribute, 2, export, [{f, 0}]},
             {function, 3, f, 0, [{clause, 3, [], [], [{atom, 3, ok}]}]}],
    {ok, Mod, Bin} = compile:forms(Forms),
    {module, Mod} = code:load_binary(Mod, "eflambe_reload_target.erl", Bin),
    Wait = async_capture({Mod, f, 0}, 1, [{timeout, 10000}]),
    {module, Mod} = code:load_binary(Mod, "eflambe_reload_target.erl", Bin),
    ?assertEqual({error, {target_reloaded, {Mod, f, 0}}}, Wait()),
    code:purge(Mod),
    code:delete(Mod),
    code:purge(Mod).

%% The default return: files, in the output directory, one per call.
results_as_files(Config) ->
    Dir = ?config(priv_dir, Config),
    Wait = async_capture({?W, two, 1}, 2, [{output_directory, Dir}]),
    [begin C = caller(fun() -> ?W:two(12) end), C ! go, receive {done, C, _} -> ok end end
     || _ <- [1, 2]],
    {ok, [F1, F2]} = Wait(),
    ?assertNotEqual(F1, F2),
    [begin
         ?assertEqual(".folded", filename:extension(F)),
         {ok, Bin} = file:read_file(F),
         ?assertEqual([<<"eflambe_workload:two/1">>], roots(Bin))
     end || F <- [F1, F2]].

%% {spawned, true}: the worker a captured call spawns is in its flamegraph,
%% with its own stacks; without it, only the caller.
spawned_processes(_Config) ->
    Wait = async_capture({?W, parent, 1}, 1, [{return, flamegraph}, {spawned, true}]),
    C = caller(fun() -> ?W:parent(18) end),
    C ! go,
    {ok, [R]} = Wait(),
    Lines = parse(R),
    ?assertEqual(2, length(pids(R))),
    ?assert(lists:any(fun({F, _}) -> lists:member(<<"eflambe_workload:child_work/1">>, F) end, Lines)),
    ?assert(lists:member(list_to_binary(pid_to_list(C)), pids(R))),
    Wait2 = async_capture({?W, parent, 1}, 1, [{return, flamegraph}]),
    C2 = caller(fun() -> ?W:parent(18) end),
    C2 ! go,
    {ok, [R2]} = Wait2(),
    ?assertEqual([list_to_binary(pid_to_list(C2))], pids(R2)),
    ?assertMatch({error, {bad_spawned, yes, _}}, eflambe:capture({?W, parent, 1}, 1, [{spawned, yes}])).

%% A limit reached during a capture ends it, disarmed; the calls that had
%% begun are given (one cut off is marked unfinished).
limit_ends_capture(_Config) ->
    Wait = async_capture({?W, two, 1}, 3, [{return, flamegraph}, {max_events, 2000}]),
    C = caller(fun() -> ?W:two(20) end),
    C ! go,
    {ok, [R]} = Wait(),
    ?assertEqual([list_to_binary(pid_to_list(C) ++ " (unfinished)")], pids(R)).

%% Folding is linear in the number of calls: 16,000 calls, each in its own
%% process, fold in well under a second (the folder once wrote each call
%% in proportion to all of them: 104 s), in every format.
many_calls(Config) ->
    N = 16000,
    Self = self(),
    Archive = filename:join(?config(priv_dir, Config), "many.eftrace"),
    spawn(fun() ->
                  Self ! {capture, timer:tc(eflambe, capture, [{?W, fib, 1}, N,
                                                               [{return, flamegraph}, {archive, Archive},
                                                                {timeout, 120000}]])}
          end),
    %% Calls made while the pattern is committed are not seen: callers
    %% come until N calls are captured.
    Result = call_until_captured(fun() -> ?W:fib(6) end, 1000),
    ?assertMatch({ok, Calls} when length(Calls) =:= N, Result),
    [begin
         {Us, {ok, Results}} = timer:tc(eflambe, replay, [Archive, [{output_format, F},
                                                                    {return, flamegraph}]]),
         ct:pal("~p: ~b calls folded in ~b ms", [F, length(Results), Us div 1000]),
         ?assertEqual(N, length(Results)),
         ?assert(Us < 30000000)
     end || F <- [brendan_gregg, perf, speedscope, svg]].

call_until_captured(Fun, Batch) ->
    [spawn(Fun) || _ <- lists:seq(1, Batch)],
    receive
        {capture, {_, Result}} -> Result
    after 10 -> call_until_captured(Fun, Batch)
    end.

%% {arm, lazy}: while the capture waits only the target carries a pattern
%% (the rest of the node runs at full speed); its first call, passed over,
%% puts the node's patterns in place, and the next is recorded from its
%% entry, with its exact stacks, through a fun another module calls and
%% through apply/3 of a module known only at run time.
lazy_arming(_Config) ->
    Captured = async_capture({?W, reaches, 1}, 1,
                             [{arm, lazy}, {return, flamegraph}, {compensate, false}]),
    ?assertEqual({traced, false}, erlang:trace_info({?W, fib, 1}, traced)),
    ?assertEqual({traced, false}, erlang:trace_info({lists, foldl, 3}, traced)),
    Caller = spawn_link(fun Loop() ->
                                _ = ?W:reaches(12),
                                receive stop -> ok after 20 -> Loop() end
                        end),
    {ok, [Folded]} = Captured(),
    Caller ! stop,
    Stacks = [tl(F) || {F, _} <- parse(Folded)],
    %% (lists:foldl/3, its last call, is a tail call: it takes the
    %% target's frame.)
    ?assertEqual([<<"eflambe_workload:reaches/1">>, <<"lists:foldl/3">>],
                 lists:usort([hd(S) || S <- Stacks]) -- [<<"lists:foldl_1/3">>]),
    FunCallsFib = fun(S) ->
                          lists:any(fun({F, G}) ->
                                            G =:= <<"eflambe_workload:fib/1">> andalso
                                                binary:match(F, <<"-reaches/1-fun-0-">>) =/= nomatch
                                    end, lists:zip(lists:droplast(S), tl(S)))
                  end,
    ?assert(lists:any(FunCallsFib, Stacks)),
    ?assertNotEqual([], [S || [<<"eflambe_workload:reaches/1">>, <<"eflambe_shapes:burn/1">> | _] = S
                                  <- Stacks]).

%% Three calls, the second doing some 60 times the work of the others
%% (fib(20) against fib(12): work, not sleeps, so that a loaded machine
%% stretches them alike): eflambe:calls/1 of the kept archive lists them in
%% the order capture gave them, the second by far the longest; the CLI
%% prints the same.
calls_ranked(Config) ->
    Archive = filename:join(?config(priv_dir, Config), "ranked.eftrace"),
    Captured = async_capture({?W, fib, 1}, 3, [{archive, Archive}, {return, flamegraph}]),
    _ = [?W:fib(N) || N <- [12, 20, 12]],
    {ok, [_, _, _]} = Captured(),
    {ok, Calls} = eflambe:calls(Archive),
    ?assertEqual([1, 2, 3], [I || #{index := I} <- Calls]),
    ?assertEqual([return_from], lists:usort([E || #{ended := E} <- Calls])),
    [Slow, Fast1, Fast2] = lists:reverse(lists:keysort(2, [{I, D} || #{index := I, duration_us := D}
                                                                     <- Calls])),
    ?assertEqual(2, element(1, Slow)),
    [?assert(element(2, Slow) > 5 * element(2, F)) || F <- [Fast1, Fast2]],
    {0, Table} = eflambe_test_util:run(filename:join(code:priv_dir(eflambe), "eflambe-fold"),
                                       ["--calls", Archive]),
    ?assertEqual(4, length(binary:split(Table, <<"\n">>, [global, trim_all]))),
    ?assertEqual({error, {archive, "/nonexistent", "no such file or directory"}},
                 eflambe:calls("/nonexistent")).

%% {keep, slowest}: only the slowest call's flamegraph, with its index.
keep_slowest(_Config) ->
    Captured = async_capture({?W, fib, 1}, 3, [{keep, slowest}, {return, flamegraph}]),
    _ = [?W:fib(N) || N <- [12, 20, 12]],
    {ok, [{2, Folded}]} = Captured(),
    %% fib(20)'s stacks are 20 deep.
    Depth = lists:max([length([F || F <- Frames, F =:= <<"eflambe_workload:fib/1">>])
                       || {Frames, _} <- parse(Folded)]),
    ?assertEqual(20, Depth),
    ?assertMatch({error, {bad_keep, fastest, _}}, eflambe:capture({?W, fib, 1}, 1, [{keep, fastest}])).
