%% Workloads with a known shape, profiled by the test suites and benchmarks.
-module(eflambe_workload).

-export([fib/1, reaches/1, two/1, slow/1, fast/1, countdown/1, catcher/0, sleeper/1, parent/1,
         timed/1, raiser/0, waiter/0, mixed/1, varied/1, work_a/1, work_b/1]).

%% Two calls of one function that differ by known amounts: varied(base)
%% does work_a and work_b once each; varied(changed) does work_a twice and
%% no work_b (a diff of the second against the first: work_a +100%,
%% work_b -100%).
varied({base, Bin}) ->
    work_a(Bin) + work_b(Bin);
varied({changed, Bin}) ->
    work_a(Bin) + work_a(Bin).

%% Work in a BIF, on a binary made beforehand: a few calls (the tracing
%% cost taken out is small beside it), no new memory to fault in; body
%% calls, so both stay on the stack over it.
work_a(Bin) -> erlang:crc32(Bin) band 1.

work_b(Bin) -> erlang:crc32(Bin) band 1.

%% Calls into other modules: through a fun lists:foldl/3 calls, and
%% through apply/3 with a module known only at run time.
reaches(N) ->
    Shapes = list_to_atom("eflambe_" ++ "shapes"),
    ok = erlang:apply(Shapes, burn, [N * 1000]),
    lists:foldl(fun(I, Acc) -> Acc + fib(I) end, 0, lists:seq(1, N)).

fib(0) -> 0;
fib(1) -> 1;
fib(N) -> fib(N - 1) + fib(N - 2).

%% slow/1 costs 2 * fib(N + 1), fast/1 costs fib(N): a ratio of about 3.2.
%% Both call fib/1 as body calls, so they stay on the stack under it.
two(N) ->
    A = slow(N),
    B = fast(N),
    A + B.

slow(N) -> fib(N + 1) + fib(N + 1).

fast(N) -> fib(N) + fib(0).

%% Tail recursive: must stay one frame deep.
countdown(0) -> done;
countdown(N) -> countdown(N - 1).

%% deep/0 raises three calls down; catcher/0 catches it, then calls after/0.
catcher() ->
    R = try deep() catch error:deep_failure -> caught end,
    after_catch(R).

deep() -> deeper(), ok.
deeper() -> deepest(), ok.
deepest() -> erlang:error(deep_failure).

after_catch(R) -> _ = fib(15), R.

sleeper(Ms) ->
    receive after Ms -> ok end,
    fib(15).

%% Spawns a child that does the work, and waits for it.
parent(N) ->
    Self = self(),
    Pid = spawn(fun() -> Self ! {self(), child_work(N)} end),
    receive {Pid, R} -> R end.

child_work(N) -> fib(N) + fib(0).

%% Measures its own wall time from inside the profiled call, and leaves it
%% in the process dictionary (apply runs in the caller's process).
timed(N) ->
    T0 = erlang:monotonic_time(microsecond),
    _ = two(N),
    _ = sleeper(20),
    put(wall_us, erlang:monotonic_time(microsecond) - T0).

raiser() ->
    _ = fib(12),
    erlang:raise(throw, {thrown, 42}, []).

waiter() ->
    receive stop -> ok end.

%% A list of {fib, N} | {sleep, Ms} steps, for property tests.
mixed(Steps) ->
    T0 = erlang:monotonic_time(microsecond),
    lists:foreach(fun({fib, N}) -> fib(N);
                     ({sleep, Ms}) -> receive after Ms -> ok end
                  end, Steps),
    put(wall_us, erlang:monotonic_time(microsecond) - T0).
