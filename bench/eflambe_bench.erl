%% Tracing overhead, measured side by side in one run: a CPU-bound workload
%% (naive fib) untraced, traced by a tracer NIF that records nothing (the
%% floor), traced by eflambe, and traced by a classic Erlang tracer process.
%% Rounds are interleaved and the median of each variant is reported.
-module(eflambe_bench).

-export([main/1, fib/1, timed_fib/1, never_called/0, archive_sizes/1, sampling_cost/0]).

-define(ROUNDS, 7).
-define(FLAGS, [call, return_to, arity, running, garbage_collection]).

main(Args) ->
    N = case Args of [A | _] -> list_to_integer(A); [] -> 27 end,
    overhead(N),
    capture_cost(N + 3),
    archive_sizes(N),
    sampling_cost().

overhead(N) ->
    io:format("eflambe overhead benchmark: fib(~b), ~b rounds, median of each; "
              "~b schedulers, OTP ~s~n", [N, ?ROUNDS, erlang:system_info(schedulers),
                                         erlang:system_info(otp_release)]),
    {module, _} = code:ensure_loaded(eflambe_bench_noop),
    Calls = 2 * fib(N + 1) - 1,
    Variants = [untraced, noop_nif, eflambe_trace, eflambe_apply, erlang_tracer],
    Results = rounds(N, Variants, ?ROUNDS, #{}),
    Median = maps:map(fun(_, Ts) -> lists:nth((length(Ts) + 1) div 2, lists:sort(Ts)) end,
                      Results),
    Floor = maps:get(noop_nif, Median),
    Untraced = maps:get(untraced, Median),
    io:format("~n~-16s ~12s ~12s ~12s ~12s~n",
              ["variant", "median ms", "ns/call", "x untraced", "x floor"]),
    [io:format("~-16s ~12.1f ~12.1f ~12.2f ~12.2f~n",
               [V, T / 1000, T * 1000 / Calls, T / Untraced, T / Floor])
     || V <- Variants, T <- [maps:get(V, Median)]],
    Tracing = maps:get(eflambe_trace, Median) / Floor,
    Whole = maps:get(eflambe_apply, Median) / Floor,
    io:format("~neflambe tracing / floor: ~.3f (goal <= 1.15)~n"
              "eflambe apply (trace + fold + write) / floor: ~.3f (goal <= 1.5)~n"
              "eflambe extra cost per traced call: ~.1f ns (~b calls, ~b events)~n",
              [Tracing, Whole, (maps:get(eflambe_trace, Median) - Floor) * 1000 / Calls,
               Calls, 2 * Calls]),
    ok.

rounds(_N, _Variants, 0, Acc) ->
    Acc;
rounds(N, Variants, K, Acc) ->
    Acc1 = lists:foldl(fun(V, A) ->
                               T = run(V, N),
                               maps:update_with(V, fun(L) -> [T | L] end, [T], A)
                       end, Acc, Variants),
    rounds(N, Variants, K - 1, Acc1).

fib(0) -> 0;
fib(1) -> 1;
fib(N) -> fib(N - 1) + fib(N - 2).

timed_fib(N) ->
    T0 = erlang:monotonic_time(microsecond),
    _ = fib(N),
    put(bench_us, erlang:monotonic_time(microsecond) - T0).

%% Microseconds for one variant.
run(untraced, N) ->
    timed_fib(N),
    get(bench_us);
run(noop_nif, N) ->
    with_local_patterns(fun() ->
        1 = erlang:trace(self(), true, [{tracer, eflambe_bench_noop, 0} | ?FLAGS]),
        timed_fib(N),
        erlang:trace(self(), false, [all]),
        get(bench_us)
    end);
%% The call as eflambe traces it, measured from inside: tracer callbacks,
%% rings and the flusher running beside it.
run(eflambe_trace, N) ->
    {ok, _} = eflambe:apply({?MODULE, timed_fib, [N]}, [{return, flamegraph}]),
    get(bench_us);
%% The whole apply, measured from outside: arming every module, tracing,
%% disarming, stopping the flusher, folding and writing the file.
run(eflambe_apply, N) ->
    Dir = filename:join(os:getenv("TMPDIR", "/tmp"), "eflambe-bench"),
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    {T, {ok, File}} = timer:tc(eflambe, apply, [{?MODULE, timed_fib, [N]},
                                                [{return, filename}, {output_directory, Dir}]]),
    ok = file:delete(File),
    T;
%% A classic Erlang tracer process: every event is a message it receives.
run(erlang_tracer, N) ->
    Tracer = spawn(fun() -> drain(0) end),
    with_local_patterns(fun() ->
        T0 = erlang:monotonic_time(microsecond),
        1 = erlang:trace(self(), true, [{tracer, Tracer} | ?FLAGS]),
        _ = fib(N),
        erlang:trace(self(), false, [all]),
        Ref = erlang:trace_delivered(self()),
        receive {trace_delivered, _, Ref} -> ok end,
        Tracer ! {done, self()},
        receive {drained, _} -> ok end,
        erlang:monotonic_time(microsecond) - T0
    end).

with_local_patterns(Fun) ->
    _ = erlang:trace_pattern({'_', '_', '_'}, true, [local]),
    try Fun() after erlang:trace_pattern({'_', '_', '_'}, false, [local]) end.

drain(Count) ->
    receive
        {done, From} -> From ! {drained, Count};
        _ -> drain(Count + 1)
    end.

%% What a capture costs the processes it does not capture: fib run
%% untraced by another process before any run, while a capture waits for a
%% call that never comes (every function carries a local call pattern),
%% and after the capture ended.
capture_cost(N) ->
    io:format("~nCost of capture to processes it does not capture: fib(~b) untraced, "
              "~b rounds, median~n", [N, ?ROUNDS]),
    Samples = [capture_round(N) || _ <- lists:seq(1, ?ROUNDS)],
    [Before, Armed, After] = [median([element(I, S) || S <- Samples]) || I <- [1, 2, 3]],
    io:format("~-16s ~12s ~12s~n", ["phase", "median ms", "x before"]),
    [io:format("~-16s ~12.1f ~12.2f~n", [Name, T / 1000, T / Before])
     || {Name, T} <- [{before, Before}, {armed, Armed}, {'after', After}]],
    io:format("~narmed / before: ~.2f (the price while a capture waits)~n"
              "after / before: ~.3f (goal: 1.00, nothing left installed)~n",
              [Armed / Before, After / Before]).

capture_round(N) ->
    Before = untraced_fib(N),
    Self = self(),
    Runner = spawn(fun() ->
                           Self ! {captured, eflambe:capture({?MODULE, never_called, 0}, 1,
                                                             [{return, flamegraph}])}
                   end),
    wait_armed(),
    Armed = untraced_fib(N),
    ok = eflambe:stop(),
    receive {captured, _} -> ok end,
    false = is_process_alive(Runner),
    After = untraced_fib(N),
    {Before, Armed, After}.

never_called() ->
    ok.

%% The pattern becomes visible a moment before it is in force everywhere.
wait_armed() ->
    case erlang:trace_info({?MODULE, never_called, 0}, meta) of
        {meta, {eflambe_tracer, _}} -> timer:sleep(50);
        _ -> timer:sleep(5), wait_armed()
    end.

%% Run in a fresh process, as an unrelated process on the node would.
untraced_fib(N) ->
    Self = self(),
    spawn(fun() -> timed_fib(N), Self ! {fib_us, get(bench_us)} end),
    receive {fib_us, T} -> T end.

median(L) ->
    lists:nth((length(L) + 1) div 2, lists:sort(L)).

%% Archive size and folding speed on two real workloads: naive fib (one
%% function, deep recursion) and the Erlang compiler compiling a module
%% (thousands of functions, a spawned worker).
archive_sizes(N) ->
    io:format("~nTrace archives: size and archive-to-folded speed (median of 3 folds)~n"),
    io:format("~-28s ~10s ~12s ~12s ~16s~n",
              ["workload", "events", "bytes", "bytes/event", "fold M events/s"]),
    Source = filename:join([code:lib_dir(eflambe), "src", "eflambe_capture.erl"]),
    Workloads = [{io_lib:format("fib(~b)", [N]), {?MODULE, fib, [N]}},
                 {"compile:file/2", {compile, file, [Source, [binary]]}}],
    [archive_row(Name, MFA) || {Name, MFA} <- Workloads],
    ok.

archive_row(Name, MFA) ->
    Archive = filename:join(os:getenv("TMPDIR", "/tmp"), "eflambe-bench.eftrace"),
    {ok, _} = eflambe:apply(MFA, [{return, flamegraph}, {archive, Archive}]),
    Bytes = filelib:file_size(Archive),
    Folds = [timer:tc(eflambe_tracer, fold, [Archive, brendan_gregg, false, 1024]) || _ <- [1, 2, 3]],
    [{_, {ok, _, #{events := Events}}} | _] = Folds,
    Us = median([T || {T, _} <- Folds]),
    ok = file:delete(Archive),
    io:format("~-28s ~10b ~12b ~12.2f ~16.1f~n",
              [Name, Events, Bytes, Bytes / Events, Events / Us]).

%% What sampling costs a CPU-bound node: one worker per scheduler runs
%% fib(20) in a loop for 2 s, counted; without sampling, and sampled at
%% the default rate and at 1,000 Hz. Rounds interleaved, medians compared.
sampling_cost() ->
    Schedulers = erlang:system_info(schedulers),
    io:format("~nCost of sampling: ~b workers busy for 2 s, 5 rounds, median iterations~n",
              [Schedulers]),
    Variants = [none, 97, 1000],
    Rounds = [[{V, sampled_run(V, Schedulers)} || V <- Variants] || _ <- lists:seq(1, 5)],
    Median = maps:from_list([{V, median([I || R <- Rounds, {V2, I} <- R, V2 =:= V])}
                             || V <- Variants]),
    Base = maps:get(none, Median),
    io:format("~-16s ~12s ~12s~n", ["sampling", "iterations", "loss"]),
    [io:format("~-16s ~12b ~11.2f%~n",
               [case V of none -> "none"; _ -> integer_to_list(V) ++ " Hz" end,
                maps:get(V, Median), 100 * (1 - maps:get(V, Median) / Base)])
     || V <- Variants],
    io:format("~ngoal: under 1% at the default rate (97 Hz), under 5% at 1,000 Hz~n").

sampled_run(Hz, Workers) ->
    Self = self(),
    Pids = [spawn(fun() -> Self ! {count, self(), spin(erlang:monotonic_time(millisecond) + 2000, 0)} end)
            || _ <- lists:seq(1, Workers)],
    case Hz of
        none -> ok;
        _ -> {ok, _} = eflambe:sample([{hz, Hz}, {duration, 2000}, {return, flamegraph}])
    end,
    lists:sum([receive {count, P, N} -> N end || P <- Pids]).

spin(Until, N) ->
    _ = fib(20),
    case erlang:monotonic_time(millisecond) >= Until of
        true -> N + 1;
        false -> spin(Until, N + 1)
    end.
