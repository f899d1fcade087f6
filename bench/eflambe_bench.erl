%% Tracing overhead, measured side by side in one run: a CPU-bound workload
%% (naive fib) untraced, traced by a tracer NIF that records nothing (the
%% floor), traced by eflambe, and traced by a classic Erlang tracer process.
%% Rounds are interleaved and the median of each variant is reported.
-module(eflambe_bench).

-export([main/1, overhead/1, fixed_cost/0, capture_cost/1, archive_sizes/1, against_eprof/0,
         sampling_cost/0,
         fib/1, timed_fib/1, never_called/0]).

-define(ROUNDS, 7).
-define(FLAGS, [call, return_to, arity, running, garbage_collection]).

main(Args) ->
    N = case Args of [A | _] -> list_to_integer(A); [] -> 27 end,
    overhead(N),
    fixed_cost(),
    capture_cost(N + 3),
    archive_sizes(N),
    against_eprof(),
    eflambe_bench_ping:main(),
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
%% call that never comes (with {arm, eager} every function carries a local
%% call pattern; with {arm, lazy} only the target), and after the capture
%% ended.
capture_cost(N) ->
    io:format("~nCost of capture to processes it does not capture: fib(~b) untraced, "
              "~b rounds, median~n", [N, ?ROUNDS]),
    Samples = [capture_round(N, Arm) || _ <- lists:seq(1, ?ROUNDS), Arm <- [eager, lazy]],
    Median = fun(Arm, I) -> median([element(I, S) || {A, _, _, _} = S <- Samples, A =:= Arm]) end,
    Before = median([element(2, S) || S <- Samples]),
    io:format("~-16s ~12s ~12s~n", ["phase", "median ms", "x before"]),
    [io:format("~-16s ~12.1f ~12.2f~n", [Name, T / 1000, T / Before])
     || {Name, T} <- [{before, Before}, {'armed (eager)', Median(eager, 3)},
                      {'armed (lazy)', Median(lazy, 3)}, {'after', median([element(4, S) || S <- Samples])}]],
    io:format("~narmed / before: ~.2f with {arm, eager}, ~.2f with {arm, lazy} (the price while a "
              "capture waits)~nafter / before: ~.3f (goal: 1.00, nothing left installed)~n",
              [Median(eager, 3) / Before, Median(lazy, 3) / Before,
               median([element(4, S) || S <- Samples]) / Before]).

capture_round(N, Arm) ->
    Before = untraced_fib(N),
    Self = self(),
    Runner = spawn(fun() ->
                           Self ! {captured, eflambe:capture({?MODULE, never_called, 0}, 1,
                                                             [{return, flamegraph}, {arm, Arm}])}
                   end),
    wait_armed(),
    Armed = untraced_fib(N),
    ok = eflambe:stop(),
    receive {captured, _} -> ok end,
    false = is_process_alive(Runner),
    After = untraced_fib(N),
    {Arm, Before, Armed, After}.

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

%% What a run costs whatever its call: apply of a call that does nothing,
%% end to end, then the parts of it, each run on its own: the session's
%% start and stop (rings, flusher thread, archive; nothing traced), the
%% node-wide local call patterns on and off, reading one module's call
%% sites into an archive, folding an archive of a fib(18) apply. Medians of
%% 15, after a first run (which calibrates).
fixed_cost() ->
    Noop = fun() -> ok end,
    {ok, _} = eflambe:apply({Noop, []}, [{return, flamegraph}]),
    Time = fun(F) -> median([element(1, timer:tc(F)) || _ <- lists:seq(1, 15)]) end,
    Apply = Time(fun() -> {ok, _} = eflambe:apply({Noop, []}, [{return, flamegraph}]) end),
    {ok, Opts} = eflambe_options:parse(apply, []),
    Params = #{target => {?MODULE, never_called, 0}, root_pid => self(), root_frame => false,
               notify => self()},
    Session = Time(fun() ->
                           {ok, S} = eflambe_session:start(apply, Params, Opts),
                           {ok, _} = eflambe_session:stop(S),
                           eflambe_session:abort(S)
                   end),
    Patterns = Time(fun() ->
                            _ = erlang:trace_pattern({'_', '_', '_'}, true, [local]),
                            erlang:trace_pattern({'_', '_', '_'}, false, [local])
                    end),
    Dir = filename:absname("_build/bench-fixed-cost"),
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    Archive = filename:join(Dir, "fib18.eftrace"),
    {ok, _} = eflambe:apply({?MODULE, fib, [18]}, [{return, flamegraph}, {archive, Archive}]),
    Sites = Time(fun() -> eflambe_call_sites:add(Archive, [?MODULE]) end),
    Native = eflambe_options:native_name(Archive),
    Fold = Time(fun() ->
                        {ok, _, _} = eflambe_tracer:fold(Native, brendan_gregg, false,
                                                         #{max_depth => 1024, recursion => exact})
                end),
    _ = file:delete(Archive),
    _ = file:del_dir(Dir),
    io:format("~nFixed cost of a run: apply of a call that does nothing ~.2f ms end to end; "
              "its parts alone: session start and stop ~.2f ms, local call patterns on and off "
              "~.2f ms (~b modules loaded), one module's call sites ~.2f ms; folding fib(18)'s "
              "archive (16,700 events) ~.2f ms~n",
              [Apply / 1000, Session / 1000, Patterns / 1000, length(code:all_loaded()),
               Sites / 1000, Fold / 1000]),
    %% A run looks at each process's trace flags as it starts and ends.
    Idle = [spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, 100000)],
    Crowded = Time(fun() -> {ok, _} = eflambe:apply({Noop, []}, [{return, flamegraph}]) end),
    [P ! stop || P <- Idle],
    io:format("The same apply with 100,000 idle processes on the node: ~.2f ms (+~.2f ms)~n",
              [Crowded / 1000, (Crowded - Apply) / 1000]).

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
    FoldOpts = #{max_depth => 1024, recursion => exact},
    Folds = [timer:tc(eflambe_tracer, fold, [Archive, brendan_gregg, false, FoldOpts]) || _ <- [1, 2, 3]],
    [{_, {ok, _, #{events := Events}}} | _] = Folds,
    Us = median([T || {T, _} <- Folds]),
    ok = file:delete(Archive),
    io:format("~-28s ~10b ~12b ~12.2f ~16.1f~n",
              [Name, Events, Bytes, Bytes / Events, Events / Us]).

%% The whole job, side by side with OTP's eprof (which gives time per
%% function, no stacks): eflambe:apply writing a folded file, and
%% eprof:profile + eprof:analyze writing its report, on the same workloads
%% (bench/eflambe_truth.erl), in alternating order, 5 rounds, medians. Each
%% workload runs once untraced first, so both find its modules loaded.
against_eprof() ->
    Dir = filename:join(os:getenv("TMPDIR", "/tmp"), "eflambe-bench-eprof"),
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    io:format("~nThe whole job against eprof's (profile + analyse), 5 rounds, median ms~n"),
    io:format("~-12s ~10s ~10s ~10s ~12s ~12s ~14s~n",
              ["workload", "untraced", "eprof", "eflambe", "eflambe/eprof", "folded MB",
               "return->file"]),
    [eprof_row(Name, Job, Dir) || {Name, Job} <- [{sort, fun eflambe_truth:sort_job/0},
                                                  {xmerl, fun eflambe_truth:xml_job/0},
                                                  {compile, fun eflambe_truth:compile_job/0}]],
    io:format("goal: eflambe / eprof <= 0.8~n"),
    ok.

eprof_row(Name, Job, Dir) ->
    _ = Job(),
    Rounds = [begin
                  {U, _} = timer:tc(Job),
                  {E, _} = timer:tc(fun() -> eprof_run(Job, Dir) end),
                  %% When the profiled call returned: what follows is the
                  %% job's tail (stop, call sites, fold, write).
                  Self = self(),
                  Timed = fun() ->
                                  R = Job(),
                                  Self ! {returned, erlang:monotonic_time(microsecond)},
                                  R
                          end,
                  {F, {ok, File}} = timer:tc(eflambe, apply, [{Timed, []}, [{return, filename},
                                                                           {output_directory, Dir}]]),
                  Done = erlang:monotonic_time(microsecond),
                  Tail = receive {returned, Returned} -> Done - Returned end,
                  Size = filelib:file_size(File),
                  ok = file:delete(File),
                  {U, E, F, Size, Tail}
              end || _ <- lists:seq(1, 5)],
    U = median([element(1, R) || R <- Rounds]),
    E = median([element(2, R) || R <- Rounds]),
    F = median([element(3, R) || R <- Rounds]),
    Size = median([element(4, R) || R <- Rounds]),
    Tail = median([element(5, R) || R <- Rounds]),
    io:format("~-12s ~10.1f ~10.1f ~10.1f ~12.2f ~12.1f ~14.1f~n",
              [Name, U / 1000, E / 1000, F / 1000, F / E, Size / 1048576, Tail / 1000]).

%% eprof's report goes to its log file; what it prints goes nowhere.
eprof_run(Job, Dir) ->
    {ok, _} = eprof:start(),
    Leader = group_leader(),
    Sink = spawn(fun sink/0),
    group_leader(Sink, whereis(eprof)),
    try
        {ok, _} = eprof:profile([], Job),
        ok = eprof:log(filename:join(Dir, "eprof.txt")),
        _ = eprof:analyze(total),
        ok
    after
        stopped = eprof:stop(),
        group_leader(Leader, self()),
        exit(Sink, kill)
    end.

sink() ->
    receive
        {io_request, From, Ref, _} -> From ! {io_reply, Ref, ok}, sink();
        _ -> sink()
    end.

%% What sampling costs a CPU-bound node: one worker per scheduler runs
%% fib(20) in a loop for 1 s, counted, beside the same run unsampled (in
%% alternating order), many times. This machine's speed drifts by a few
%% percent from one run to the next, more than the loss: each row gives
%% the pairs' median and quartiles, and their mean with its 95% interval.
%% Then again with 10,000 idle processes on the node, which the sampler
%% should not pay for at each tick. (A run's fixed cost, about 2 ms of CPU
%% to start, fold and write, is 0.1% of a pair.)
sampling_cost() ->
    Schedulers = erlang:system_info(schedulers),
    io:format("~nCost of sampling: ~b workers busy; pairs of 1 s runs, sampled and not; "
              "loss of the sampled run~n", [Schedulers]),
    io:format("~-36s ~6s ~9s ~9s ~9s ~9s ~9s~n", ["sampling", "pairs", "median", "quartile",
                                                  "quartile", "mean", "95% +-"]),
    sampling_row(97, 100, Schedulers, ""),
    Loss1000 = sampling_row(1000, 30, Schedulers, ""),
    Idle = [spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, 10000)],
    sampling_row(97, 30, Schedulers, ", 10,000 idle processes"),
    [P ! stop || P <- Idle],
    %% At 1,000 Hz the loss stands ten times higher above the noise.
    io:format("~nper tick at 1,000 Hz: ~.1f us of the node's time, ~.2f% of it at 97 Hz~n"
              "goal: under 1% at the default rate (97 Hz), under 5% at 1,000 Hz~n",
              [Loss1000 * Schedulers * 1000, Loss1000 * 97 / 10]).

%% Prints a row, returns the mean loss. The mean's 95% interval says
%% whether a goal is met despite the noise.
sampling_row(Hz, Pairs, Workers, Note) ->
    Losses = lists:sort([pair_loss(Hz, Workers, K) || K <- lists:seq(1, Pairs)]),
    Quartile = fun(Q) -> lists:nth(max(1, round(Q * length(Losses))), Losses) end,
    Mean = lists:sum(Losses) / Pairs,
    Sd = math:sqrt(lists:sum([(L - Mean) * (L - Mean) || L <- Losses]) / (Pairs - 1)),
    io:format("~-36s ~6b ~8.2f% ~8.2f% ~8.2f% ~8.2f% ~8.2f%~n",
              [integer_to_list(Hz) ++ " Hz" ++ Note, Pairs, 100 * median(Losses),
               100 * Quartile(0.25), 100 * Quartile(0.75), 100 * Mean,
               100 * 1.96 * Sd / math:sqrt(Pairs)]),
    Mean.

%% The unsampled run first in even pairs, second in odd ones.
pair_loss(Hz, Workers, K) when K rem 2 =:= 0 ->
    Base = sampled_run(none, Workers),
    1 - sampled_run(Hz, Workers) / Base;
pair_loss(Hz, Workers, _) ->
    Sampled = sampled_run(Hz, Workers),
    1 - Sampled / sampled_run(none, Workers).

sampled_run(Hz, Workers) ->
    Self = self(),
    Until = erlang:monotonic_time(millisecond) + 1000,
    Pids = [spawn(fun() -> Self ! {count, self(), spin(Until, 0)} end)
            || _ <- lists:seq(1, Workers)],
    case Hz of
        none -> ok;
        _ -> {ok, _} = eflambe:sample([{hz, Hz}, {duration, 1000}, {return, flamegraph}])
    end,
    lists:sum([receive {count, P, N} -> N end || P <- Pids]).

spin(Until, N) ->
    _ = fib(20),
    case erlang:monotonic_time(millisecond) >= Until of
        true -> N + 1;
        false -> spin(Until, N + 1)
    end.
