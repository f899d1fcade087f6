%% eflambe:apply on real workloads: the shape of the stacks, their weights,
%% and that nothing stays installed whatever happens.
-module(eflambe_apply_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(W, eflambe_workload).

all() ->
    [nesting, relative_weights, tail_recursion_bounded, stack_after_caught_exception,
     sleep_frame, spawned_process, spawned_untraced, weights_add_up_to_wall_time, exception_reaches_caller,
     return_filename, return_flamegraph, return_value, fun_targets, bad_options,
     undefined_function, already_running, already_traced, folded_format,
     caller_killed, nif_reload, exclude, max_depth, max_events, max_bytes, timeout, plain_fun,
     stop_during_apply, lost_events, weights_property].

init_per_testcase(_Case, Config) ->
    Config.

end_per_testcase(_Case, _Config) ->
    assert_nothing_installed().

%% ---- helpers ------------------------------------------------------------

%% A run is in progress: every function carries its local call pattern.
wait_armed() ->
    eflambe_test_util:wait_until(
      fun() -> erlang:trace_info({?W, fib, 1}, traced) =:= {traced, local} end).

%% Profiles MFA and returns the folded lines as [{Frames, Microseconds}], in
%% the traced run's own time: with the tracing cost taken out, a frame that
%% only calls others (fib(18) at the top) has no line of its own
%% (eflambe_time_SUITE checks that time).
profile(M, F, A) ->
    profile(M, F, A, []).

profile(M, F, A, Opts) ->
    {ok, Folded} = eflambe:apply({M, F, A}, [{return, flamegraph}, {compensate, false} | Opts]),
    parse(Folded).

parse(Folded) ->
    eflambe_test_util:parse(Folded).

weight(Pred, Lines) ->
    lists:sum([W || {Frames, W} <- Lines, Pred(Frames)]).

has_frame(Name) ->
    fun(Frames) -> lists:member(Name, Frames) end.

%% Frames below the process frame.
calls(Frames) -> tl(Frames).

assert_nothing_installed() ->
    ?assertEqual({flags, []}, erlang:trace_info(self(), flags)),
    ?assertEqual({tracer, []}, erlang:trace_info(self(), tracer)),
    [begin
         ?assertEqual({traced, false}, erlang:trace_info(MFA, traced)),
         ?assertEqual({meta, false}, erlang:trace_info(MFA, meta))
     end || MFA <- [{?W, two, 1}, {?W, fib, 1}, {lists, seq, 2}, {?W, raiser, 0},
                    {eflambe_apply, profiled, 1}]],
    ?assertEqual({traced, false}, erlang:trace_info(on_load, traced)),
    %% A new run can start: the session was stopped.
    ?assertMatch({ok, _}, eflambe:apply({lists, seq, [1, 3]}, [{return, flamegraph}])).

%% ---- cases --------------------------------------------------------------

%% Every stack starts at the process, then the profiled function; the
%% callees sit under their callers.
nesting(_Config) ->
    Lines = profile(?W, two, [18]),
    Pid = pid_to_list(self()),
    [begin
         ?assertEqual(list_to_binary(Pid), hd(Frames)),
         ?assertEqual(<<"eflambe_workload:two/1">>, hd(calls(Frames)))
     end || {Frames, _} <- Lines],
    Stacks = [calls(Frames) || {Frames, _} <- Lines],
    ?assert(lists:member([<<"eflambe_workload:two/1">>, <<"eflambe_workload:slow/1">>,
                          <<"eflambe_workload:fib/1">>], Stacks)),
    ?assert(lists:member([<<"eflambe_workload:two/1">>, <<"eflambe_workload:fast/1">>,
                          <<"eflambe_workload:fib/1">>], Stacks)),
    %% fib's body recursion keeps its real depth: fib(19) under slow/1
    %% calls down to fib(1), 19 frames (the deepest may round to 0 us).
    FibDepth = lists:max([length([F || F <- S, F =:= <<"eflambe_workload:fib/1">>]) || S <- Stacks]),
    ?assert(FibDepth >= 16 andalso FibDepth =< 19).

%% slow/1 does about 3.2 times the work of fast/1: running time only (not
%% the time off the CPU), and the traced run's (every call of fib costs the
%% same to trace; what compensation leaves of pure calls is noise).
relative_weights(_Config) ->
    {ok, Folded} = eflambe:apply({?W, two, [22]}, [{return, flamegraph}, {compensate, false}]),
    Lines = [L || {Frames, _} = L <- parse(Folded), not lists:member(lists:last(Frames), [<<"sleep">>, <<"runnable">>, <<"[os preempted]">>])],
    Slow = weight(has_frame(<<"eflambe_workload:slow/1">>), Lines),
    Fast = weight(has_frame(<<"eflambe_workload:fast/1">>), Lines),
    Ratio = Slow / Fast,
    ct:pal("slow ~b us, fast ~b us, ratio ~.2f (expected ~.2f)",
           [Slow, Fast, Ratio, 2 * ?W:fib(23) / ?W:fib(22)]),
    ?assert(Ratio > 2.6 andalso Ratio < 4.0).

%% 100,000 tail calls and still one frame.
tail_recursion_bounded(_Config) ->
    Lines = profile(?W, countdown, [100000]),
    Depth = lists:max([length(Frames) || {Frames, _} <- Lines]),
    ?assert(Depth =< 3),
    ?assert(weight(has_frame(<<"eflambe_workload:countdown/1">>), Lines) > 0).

%% After deepest/0 raised and catcher/0 caught, after_catch/1 runs in
%% catcher/0's place (a tail call), not under the frames the exception
%% unwound. deep/0 and deeper/0 tail-call (the compiler knows deepest/0
%% never returns), so the raise happens right under catcher/0.
stack_after_caught_exception(_Config) ->
    Lines = profile(?W, catcher, []),
    Stacks = [calls(Frames) || {Frames, _} <- Lines],
    Catcher = <<"eflambe_workload:catcher/0">>,
    After = <<"eflambe_workload:after_catch/1">>,
    %% fib/1 right under after_catch/1 (how long its outermost call takes
    %% itself, which a line of its own would need, is under a microsecond).
    ?assert(lists:any(fun(S) -> lists:prefix([After, <<"eflambe_workload:fib/1">>], S) end, Stacks)),
    [?assertEqual(After, hd(S)) || S <- Stacks, lists:member(After, S)],
    ?assert(lists:member([Catcher, <<"eflambe_workload:deepest/0">>, <<"erlang:error/1">>], Stacks)).

%% 100 ms in a receive ... after shows as sleep on top of sleeper/1.
sleep_frame(_Config) ->
    Lines = profile(?W, sleeper, [100]),
    Sleep = weight(fun(Frames) ->
                           calls(Frames) =:= [<<"eflambe_workload:sleeper/1">>, <<"sleep">>]
                   end, Lines),
    ct:pal("sleep ~b us", [Sleep]),
    ?assert(Sleep >= 95000 andalso Sleep < 150000).

%% The child spawned during the call is traced too, under its own pid.
spawned_process(_Config) ->
    Lines = profile(?W, parent, [20]),
    Me = list_to_binary(pid_to_list(self())),
    Children = [Frames || {[P | _] = Frames, _} <- Lines, P =/= Me],
    ?assertNotEqual([], Children),
    ?assert(lists:any(fun(F) -> lists:member(<<"eflambe_workload:fib/1">>, F) end, Children)),
    ?assert(lists:any(fun(F) -> lists:member(<<"eflambe_workload:child_work/1">>, F) end,
                      Children)).

%% The processes a run traced have no flags once it ended: those it
%% recorded at once, one spawned as it ended at its first event (the end
%% looks at the processes the run recorded, not at every process).
spawned_untraced(_Config) ->
    Self = self(),
    Serve = fun Loop() -> receive {ping, From} -> From ! {pong, self()}, Loop(); stop -> ok end end,
    {ok, _} = eflambe:apply(fun() ->
                                    Ran = [spawn(Serve) || _ <- [1, 2, 3]],
                                    timer:sleep(20),
                                    Self ! {children, Ran, spawn(Serve)}
                            end, [{return, flamegraph}]),
    {Ran, Last} = receive {children, R, L} -> {R, L} end,
    try
        [?assertEqual({flags, []}, erlang:trace_info(P, flags)) || P <- Ran],
        Last ! {ping, self()},
        receive {pong, Last} -> ok end,
        ?assertEqual({flags, []}, erlang:trace_info(Last, flags)),
        ?assertEqual([], [P || {P, {eflambe_tracer, _}} <- eflambe_session:traced()])
    after
        [P ! stop || P <- [Last | Ran]]
    end.

%% The weights of the profiled process add up to the call's wall time,
%% with the tracing cost kept in (compensate false).
weights_add_up_to_wall_time(_Config) ->
    {ok, Folded} = eflambe:apply({?W, timed, [20]}, [{return, flamegraph}, {compensate, false}]),
    Me = list_to_binary(pid_to_list(self())),
    Lines = parse(Folded),
    Total = weight(fun([P | _]) -> P =:= Me end, Lines),
    Wall = get(wall_us),
    ct:pal("folded total ~b us, wall time measured inside the call ~b us", [Total, Wall]),
    %% The folded window also holds the call's entry and exit, which the
    %% inner measurement does not: a few microseconds.
    ?assert(Total >= Wall - 50 andalso Total =< Wall * 1.03 + 200).

%% An exception from the profiled call reaches the caller unchanged.
exception_reaches_caller(_Config) ->
    ?assertEqual({throw, {thrown, 42}},
                 try eflambe:apply({?W, raiser, []}) catch C:R -> {C, R} end),
    ?assertEqual({error, badarith},
                 try eflambe:apply({fun(X) -> 1 / X end, [0]}) catch C:R -> {C, R} end).

return_filename(Config) ->
    Dir = ?config(priv_dir, Config),
    {ok, File} = eflambe:apply({?W, fib, [15]}, [{return, filename}, {output_directory, Dir}]),
    ?assertEqual(Dir, filename:dirname(File) ++ "/"),
    ?assertEqual(".folded", filename:extension(File)),
    {ok, Bin} = file:read_file(File),
    ?assertMatch([_ | _], parse(Bin)).

return_flamegraph(Config) ->
    Dir = ?config(priv_dir, Config),
    Before = filelib:wildcard(filename:join(Dir, "*.folded")),
    {ok, Bin} = eflambe:apply({?W, fib, [15]}, [{return, flamegraph}]),
    ?assert(is_binary(Bin)),
    {ok, Bin2} = eflambe:apply({?W, fib, [15]}, [{return, flamegraph}, {output_directory, Dir}]),
    ?assert(is_binary(Bin2)),
    ?assertEqual(length(Before) + 1, length(filelib:wildcard(filename:join(Dir, "*.folded")))).

return_value(Config) ->
    Dir = ?config(priv_dir, Config),
    ?assertEqual({ok, 610}, eflambe:apply({?W, fib, [15]}, [{output_directory, Dir}])),
    ?assertEqual({ok, [1, 2, 3]}, eflambe:apply({lists, seq, [1, 3]}, [{output_directory, Dir}])).

%% Local funs, external funs, and Elixir-style keyword options.
fun_targets(_Config) ->
    N = 16,
    %% A body call: the fun stays under fib/1.
    {ok, Bin} = eflambe:apply({fun() -> ?W:fib(N) + 0 end, []}, [{return, flamegraph}]),
    Lines = parse(Bin),
    ?assert(lists:all(fun({Frames, _}) ->
                              binary:match(hd(calls(Frames)), <<"-fun_targets/1-fun-">>) =/= nomatch
                      end, Lines)),
    ?assert(weight(has_frame(<<"eflambe_workload:fib/1">>), Lines) > 0),
    {ok, Bin2} = eflambe:apply({fun ?W:fib/1, [16]}, [{return, flamegraph}, {compensate, false}]),
    ?assertMatch([{[_, <<"eflambe_workload:fib/1">>], _} | _], parse(Bin2)).

bad_options(Config) ->
    Dir = ?config(priv_dir, Config),
    File = filename:join(Dir, "a-file"),
    ok = file:write_file(File, <<>>),
    MFA = {?W, fib, [5]},
    ?assertMatch({error, {unknown_option, {colour, red}}}, eflambe:apply(MFA, [{colour, red}])),
    ?assertMatch({error, {unknown_option, verbose}}, eflambe:apply(MFA, [verbose])),
    ?assertMatch({error, {bad_options, _}}, eflambe:apply(MFA, #{})),
    ?assertMatch({error, {bad_output_format, svgz, _}}, eflambe:apply(MFA, [{output_format, svgz}])),
    ?assertMatch({error, {bad_return, everything, _}}, eflambe:apply(MFA, [{return, everything}])),
    ?assertMatch({error, {output_directory, "/nonexistent/dir", _}},
                 eflambe:apply(MFA, [{output_directory, "/nonexistent/dir"}])),
    ?assertMatch({error, {output_directory, File, "not a directory"}},
                 eflambe:apply(MFA, [{output_directory, File}])),
    ?assertMatch({error, {bad_output_directory, 42}}, eflambe:apply(MFA, [{output_directory, 42}])),
    ?assertMatch({error, {bad_buffer_size, 1, _}}, eflambe:apply(MFA, [{buffer_size, 1}])).

undefined_function(_Config) ->
    ?assertEqual({error, {undefined_function, {no_such_module, f, 0}}},
                 eflambe:apply({no_such_module, f, []})),
    ?assertEqual({error, {undefined_function, {lists, no_such_fun, 1}}},
                 eflambe:apply({lists, no_such_fun, [x]})),
    ?assertMatch({error, {bad_arity, _, {expected, 1}, {got, 2}}},
                 eflambe:apply({fun(X) -> X end, [1, 2]})),
    ?assertMatch({error, {bad_function, nonsense, _}}, eflambe:apply(nonsense)),
    ?assertMatch({error, {bad_function, _, _}}, eflambe:apply(fun(X) -> X end)).

%% A fun of no arguments, on its own: its value, and its stacks rooted at it.
plain_fun(_Config) ->
    ?assertEqual({ok, 610}, eflambe:apply(fun() -> ?W:fib(15) end, [])),
    {ok, Folded} = eflambe:apply(fun() -> ?W:fib(15) end, [{return, flamegraph}]),
    ?assert(lists:any(fun({Frames, _}) -> lists:member(<<"eflambe_workload:fib/1">>, Frames) end,
                      parse(Folded))).

%% One run per node: a second caller is refused while the first runs.
already_running(_Config) ->
    Self = self(),
    Pid = spawn(fun() ->
                        R = eflambe:apply({?W, waiter, []}, [{return, flamegraph}]),
                        Self ! {first, R}
                end),
    try
        wait_armed(),
        ?assertEqual({error, already_running}, eflambe:apply({?W, fib, [5]}))
    after
        Pid ! stop
    end,
    receive {first, R} -> ?assertMatch({ok, _}, R) end.

%% A caller that already has a tracer is refused, and its tracer stays.
already_traced(_Config) ->
    Tracer = spawn(fun() -> receive stop -> ok end end),
    1 = erlang:trace(self(), true, [send, {tracer, Tracer}]),
    try
        ?assertMatch({error, {already_traced, _, Tracer}}, eflambe:apply({?W, fib, [5]})),
        ?assertEqual({tracer, Tracer}, erlang:trace_info(self(), tracer))
    after
        erlang:trace(self(), false, [all]),
        Tracer ! stop
    end.

%% Excluded functions are not traced: no frame, their time with the caller.
exclude(_Config) ->
    Lines = profile(?W, two, [18], [{exclude, [{?W, fib, 1}, lists]}]),
    ?assertNot(lists:any(fun({F, _}) -> lists:member(<<"eflambe_workload:fib/1">>, F) end, Lines)),
    Slow = weight(has_frame(<<"eflambe_workload:slow/1">>), Lines),
    Fast = weight(has_frame(<<"eflambe_workload:fast/1">>), Lines),
    ?assert(Slow > 2 * Fast),
    ?assertMatch({error, {bad_exclude, "lists", _}}, eflambe:apply({?W, fib, [5]}, [{exclude, ["lists"]}])),
    ?assertMatch({error, {bad_exclude, lists, _}}, eflambe:apply({?W, fib, [5]}, [{exclude, lists}])).

%% max_depth: no stack deeper than that many functions below the process.
max_depth(_Config) ->
    Lines = profile(?W, catcher, [], [{max_depth, 2}]),
    ?assertEqual(3, lists:max([length(F) || {F, _} <- Lines,
                                            not lists:member(lists:last(F), [<<"gc">> | [<<"sleep">>, <<"runnable">>, <<"[os preempted]">>]])])),
    ?assertMatch({error, {bad_max_depth, 0, _}}, eflambe:apply({?W, fib, [5]}, [{max_depth, 0}])),
    ?assertMatch({error, {bad_max_depth, 2000, _}}, eflambe:apply({?W, fib, [5]}, [{max_depth, 2000}])).

%% The SVG's title: where a partial profile says why.
svg_title(Svg) ->
    {match, [Title]} = re:run(Svg, <<"<text class=\"title\"[^>]*>([^<]*)<">>,
                              [{capture, all_but_first, binary}]),
    Title.

%% A limit stops recording mid-call: the call goes on and returns its
%% value, the profile says it is partial, nothing stays armed.
max_events(_Config) ->
    {ok, Svg} = eflambe:apply({?W, two, [20]}, [{max_events, 5000}, {output_format, svg},
                                                 {return, flamegraph}]),
    ?assertMatch({match, _}, re:run(svg_title(Svg), <<"partial: recording stopped: max_events reached">>)),
    ?assertEqual({ok, ?W:two(12)}, eflambe:apply({?W, two, [12]}, [{max_events, 100}])),
    ?assertMatch({error, {bad_max_events, 0, _}}, eflambe:apply({?W, two, [5]}, [{max_events, 0}])).

max_bytes(_Config) ->
    {ok, Svg} = eflambe:apply({?W, two, [20]}, [{max_bytes, 4000}, {output_format, svg},
                                                 {return, flamegraph}]),
    ?assertMatch({match, _}, re:run(svg_title(Svg), <<"max_bytes reached">>)),
    ?assertMatch({error, {bad_max_bytes, x, _}}, eflambe:apply({?W, two, [5]}, [{max_bytes, x}])).

%% timeout: recording stops, the call goes on (and is not shortened).
timeout(_Config) ->
    T0 = erlang:monotonic_time(millisecond),
    {ok, Svg} = eflambe:apply({?W, sleeper, [400]}, [{timeout, 100}, {output_format, svg},
                                                      {return, flamegraph}]),
    ?assert(erlang:monotonic_time(millisecond) - T0 >= 400),
    ?assertMatch({match, _}, re:run(svg_title(Svg), <<"recording stopped: timeout">>)),
    ?assertEqual({traced, false}, erlang:trace_info({?W, fib, 1}, traced)).

stop_during_apply(_Config) ->
    Self = self(),
    spawn(fun() ->
                  eflambe_test_util:wait_until(fun() -> whereis(eflambe_running) =/= undefined end),
                  Self ! {stopped, eflambe:stop()}
          end),
    {ok, Svg} = eflambe:apply({?W, sleeper, [300]}, [{output_format, svg}, {return, flamegraph}]),
    receive {stopped, R} -> ?assertEqual(ok, R) end,
    ?assertMatch({match, _}, re:run(svg_title(Svg), <<"recording stopped: eflambe:stop\(\)">>)).

%% A buffer too small for the call: events are lost and counted, each
%% affected stack restarts from a [dropped N events] frame, and the time
%% still adds up to the call's.
lost_events(_Config) ->
    {ok, Folded} = eflambe:apply({?W, timed, [20]}, [{return, flamegraph}, {buffer_size, 2048},
                                                     {compensate, false}]),
    Lines = parse(Folded),
    ?assert(lists:any(fun({[_, Frame | _], _}) -> binary:match(Frame, <<"[dropped ">>) =/= nomatch;
                         (_) -> false
                      end, Lines)),
    Total = lists:sum([N || {_, N} <- Lines]),
    Wall = get(wall_us),
    ?assert(Total =< Wall * 1.03 + 200 andalso Total >= Wall * 0.9),
    {ok, Svg} = eflambe:apply({?W, two, [20]}, [{return, flamegraph}, {buffer_size, 2048},
                                                {output_format, svg}]),
    ?assertMatch({match, _}, re:run(svg_title(Svg), <<"[0-9]+ events lost">>)).

%% A caller killed mid-call leaves nothing armed, and the next run starts.
caller_killed(_Config) ->
    Pid = spawn(fun() -> eflambe:apply({?W, waiter, []}) end),
    %% Armed (on a loaded machine that takes a while); the caller is killed
    %% however the wait ends, so no run is left behind.
    try
        wait_armed()
    after
        exit(Pid, kill)
    end,
    eflambe_test_util:wait_until(fun() -> eflambe_tracer:running_session() =:= undefined end),
    ?assertEqual({traced, false}, erlang:trace_info({?W, fib, 1}, traced)),
    ?assertMatch({ok, _}, eflambe:apply({?W, fib, [10]}, [{return, flamegraph}])).

%% Loading a new version of the NIF module and purging the old one keeps
%% the library working (the upgrade and unload callbacks).
nif_reload(_Config) ->
    {ok, Bin1} = eflambe:apply({?W, two, [12]}, [{return, flamegraph}]),
    {module, eflambe_tracer} = code:load_file(eflambe_tracer),
    true = code:soft_purge(eflambe_tracer),
    {ok, Bin2} = eflambe:apply({?W, two, [12]}, [{return, flamegraph}]),
    ?assertEqual(stacks(Bin1), stacks(Bin2)),
    {module, eflambe_tracer} = code:load_file(eflambe_tracer),
    true = code:soft_purge(eflambe_tracer),
    ?assertMatch({ok, _}, eflambe:apply({?W, fib, [10]}, [{return, flamegraph}])).

%% The function stacks of a profile, each with its callers' stacks; that a
%% run was scheduled out or collected garbage somewhere (sleep, gc), that
%% a caller's own time rounded to 0 us (it has no line then), or how deep
%% a recursion's shortest last calls were seen (fib(1) takes less than a
%% microsecond), is timing, not shape.
stacks(Folded) ->
    lists:usort([lists:sublist(Stack, N)
                 || {Frames, _} <- parse(Folded),
                    Stack <- [dedup([F || F <- tl(Frames), not lists:member(F, [<<"gc">> | [<<"sleep">>, <<"runnable">>, <<"[os preempted]">>]])])],
                    N <- lists:seq(1, length(Stack))]).

dedup([F, F | Rest]) -> dedup([F | Rest]);
dedup([F | Rest]) -> [F | dedup(Rest)];
dedup([]) -> [].

%% flamegraph.pl's syntax: "frame;frame COUNT", sorted, unique stacks.
folded_format(_Config) ->
    {ok, Bin} = eflambe:apply({?W, two, [16]}, [{return, flamegraph}]),
    Lines = binary:split(Bin, <<"\n">>, [global, trim_all]),
    ?assertEqual(lists:sort(Lines), Lines),
    [?assertMatch({match, _}, re:run(L, <<"^[^;\\s]+(;[^;\\n]+)* [1-9][0-9]*$">>)) || L <- Lines],
    Stacks = [S || {S, _} <- parse(Bin)],
    ?assertEqual(length(Stacks), length(lists:usort(Stacks))).

%% Property: for any mix of work and sleep, the profiled process's weights
%% add up to the wall time the call measured itself (tracing cost kept in).
weights_property(_Config) ->
    Prop = proper:forall(
             proper_types:non_empty(
               proper_types:list(proper_types:oneof(
                                   [{fib, proper_types:integer(5, 20)},
                                    {sleep, proper_types:integer(1, 10)}]))),
             fun(Steps) ->
                     {ok, Folded} = eflambe:apply({?W, mixed, [Steps]},
                                                  [{return, flamegraph}, {compensate, false}]),
                     Me = list_to_binary(pid_to_list(self())),
                     Total = weight(fun([P | _]) -> P =:= Me end, parse(Folded)),
                     Wall = get(wall_us),
                     Total >= Wall - 50 andalso Total =< Wall * 1.03 + 200
             end),
    ?assert(proper:quickcheck(Prop, [{numtests, 25}, {to_file, user}])).
