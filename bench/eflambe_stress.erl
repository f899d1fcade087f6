%% Stress: eflambe under load the node must survive. Two runs:
%%  - 1,000 processes call the captured function at once, N = 5;
%%  - apply on a workload of about 100 million trace events, default
%%    buffers.
%% Throughout, a watcher process is pinged every 10 ms and must answer
%% within 100 ms; memory (the VM's, and the OS process's RSS) is sampled.
%% Run with `make stress'.
-module(eflambe_stress).

-export([main/0, fib/1, target/1, burst/1]).

main() ->
    io:format("eflambe stress: ~b schedulers~n", [erlang:system_info(schedulers)]),
    many_callers(),
    big_trace(),
    ok.

fib(0) -> 0;
fib(1) -> 1;
fib(N) -> fib(N - 1) + fib(N - 2).

target(N) -> fib(N).

many_callers() ->
    Probe = probe_start(),
    Self = self(),
    Waiter = spawn(fun() -> Self ! {captured, eflambe:capture({?MODULE, target, 1}, 5,
                                                              [{return, flamegraph},
                                                               {timeout, 60000}])}
                   end),
    wait_armed(),
    T0 = erlang:monotonic_time(millisecond),
    Callers = [spawn(fun() -> receive go -> target(18) end end) || _ <- lists:seq(1, 1000)],
    [C ! go || C <- Callers],
    Result = receive {captured, R} -> R after 120000 -> timeout end,
    Ms = erlang:monotonic_time(millisecond) - T0,
    false = is_process_alive(Waiter),
    Stats = probe_stop(Probe),
    io:format("~n1,000 callers at once, capture N = 5: ~s in ~b ms~n",
              [case Result of
                   {ok, L} -> io_lib:format("~b results", [length(L)]);
                   Other -> io_lib:format("~p", [Other])
               end, Ms]),
    report(Stats),
    Left = [P || P <- processes(), erlang:trace_info(P, tracer) =/= {tracer, []},
                 erlang:trace_info(P, tracer) =/= undefined],
    io:format("  processes still traced afterwards: ~b~n", [length(Left)]).

big_trace() ->
    Probe = probe_start(),
    T0 = erlang:monotonic_time(millisecond),
    {ok, Folded} = eflambe:apply({?MODULE, burst, [36]}, [{return, flamegraph}]),
    Ms = erlang:monotonic_time(millisecond) - T0,
    Stats = probe_stop(Probe),
    Calls = 2 * fib(37) - 1,
    Lines = binary:split(Folded, <<"\n">>, [global, trim_all]),
    io:format("~napply on fib(36): ~b calls, ~b events traced, in ~b ms; ~b folded lines~n",
              [Calls, 2 * Calls, Ms, length(Lines)]),
    %% Recursion folds into a few lines; any loss shows as a [dropped N events] frame.
    [io:format("    ~s~n", [L]) || length(Lines) =< 8, L <- Lines],
    report(Stats).

burst(N) -> fib(N).

wait_armed() ->
    case erlang:trace_info({?MODULE, target, 1}, meta) of
        {meta, {eflambe_tracer, _}} -> timer:sleep(50);
        _ -> timer:sleep(5), wait_armed()
    end.

%% A watcher answering pings, and a sampler of memory.
probe_start() ->
    Watcher = spawn(fun Loop() -> receive {ping, From} -> From ! pong, Loop(); stop -> ok end end),
    Self = self(),
    spawn(fun() -> probe_loop(Self, Watcher, #{max_ping_us => 0, pings => 0,
                                               vm => [], rss => []}) end).

probe_loop(Owner, Watcher, Acc) ->
    receive
        stop ->
            Watcher ! stop,
            Owner ! {probe, Acc}
    after 10 ->
            T0 = erlang:monotonic_time(microsecond),
            Watcher ! {ping, self()},
            receive pong -> ok end,
            Us = erlang:monotonic_time(microsecond) - T0,
            #{max_ping_us := Max, pings := N, vm := Vm, rss := Rss} = Acc,
            probe_loop(Owner, Watcher, Acc#{max_ping_us := max(Max, Us), pings := N + 1,
                                            vm := [erlang:memory(total) | Vm],
                                            rss := [rss_kb() | Rss]})
    end.

probe_stop(Probe) ->
    Probe ! stop,
    receive {probe, Stats} -> Stats end.

rss_kb() ->
    {ok, Status} = file:read_file("/proc/self/status"),
    {match, [Kb]} = re:run(Status, <<"VmRSS:\\s+(\\d+)">>, [{capture, all_but_first, binary}]),
    binary_to_integer(Kb).

report(#{max_ping_us := Max, pings := N, vm := Vm, rss := Rss}) ->
    io:format("  watcher: ~b pings, slowest answer ~.1f ms (goal < 100)~n", [N, Max / 1000]),
    io:format("  VM memory: min ~b MB, max ~b MB; OS RSS: min ~b MB, max ~b MB~n",
              [lists:min(Vm) div 1048576, lists:max(Vm) div 1048576,
               lists:min(Rss) div 1024, lists:max(Rss) div 1024]).
