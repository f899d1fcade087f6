%% @private
%% eflambe:sample: profiles the node (or some processes) by sampling, with
%% no call tracing: every period a sampler process takes the stack of each
%% process that is running or runnable, and the tracer NIF writes the
%% samples through the same rings, archive and folder as traces, each
%% weighing one period.
-module(eflambe_sample).

-export([sample/1, parsed/1]).

%% Stacks deeper than the VM's backtrace depth are cut by process_info:
%% raised for the run (a node-wide flag: crash reports show longer stack
%% traces meanwhile), put back after.
-define(BACKTRACE_DEPTH, 64).

%% Processes checked between two reads of the run queues' task count.
-define(RECOUNT_EVERY, 256).

%% The processes the sampler checks: all (to be listed), or a list (of all,
%% or of the ones asked for) whose first NBusy were busy last tick.
-type known() :: all | {all | pids, NBusy :: non_neg_integer(), [pid()]}.

%% What one tick found: the stacks taken, and the processes found busy
%% and idle, each list newest first.
-record(found, {samples = [] :: [{pid(), list()}],
                busy = [] :: [pid()],
                idle = [] :: [pid()]}).

-spec sample(term()) -> {ok, binary() | file:filename()} | {ok, binary() | file:filename(), list()} | {error, term()}.
sample(Options) ->
    case eflambe_options:parse(sample, Options) of
        {ok, #{nodes := Nodes} = Opts} when Nodes =/= undefined ->
            eflambe_cluster:sample(Nodes, Opts);
        {ok, Opts} ->
            parsed(Opts);
        {error, _} = Error ->
            Error
    end.

%% A sample of one node, this one or {node, Node}, its options parsed.
-spec parsed(eflambe_options:opts()) -> {ok, binary() | file:filename()} | {error, term()}.
parsed(#{node := Node} = Opts) when Node =/= node() ->
    eflambe_remote:sample(Node, Opts);
parsed(#{fetch_archive := Path}) when Path =/= undefined ->
    {error, {fetch_archive, Path, "only with {node, Node}; here, use archive"}};
parsed(Opts) ->
    run(Opts).

-spec run(eflambe_options:opts()) -> {ok, binary() | file:filename()} | {error, term()}.
run(Opts) ->
    eflambe_session:owned(fun(Caller) -> owner(Caller, Opts) end, sample_failed).

-spec owner(pid(), eflambe_options:opts()) -> {ok, term()} | {error, term()}.
owner(Caller, #{hz := Hz, duration := Duration, pids := Pids} = Opts) ->
    %% Samples come a tick at a time: the flusher need not wake up often.
    Params = #{target => {node(), Hz}, notify => self(), flusher_idle_ms => 50},
    case eflambe_session:start(sample, Params, Opts) of
        {ok, Session} ->
            Record = fun(Watch) -> record(Session, Watch, Hz, Duration, Pids) end,
            case eflambe_session:watched(Caller, Session, Record) of
                {ok, _Why} ->
                    case eflambe_session:finish(Session, false, Opts) of
                        {ok, Data, Info} -> eflambe_output:write(Data, Info, Opts);
                        {error, _} = Error -> Error
                    end;
                {error, _} = Error ->
                    Error
            end;
        {error, _} = Error ->
            Error
    end.

%% What the sampling loop keeps from tick to tick.
-record(ticks, {session :: eflambe_session:session(),
                watch :: {pid(), reference()},
                period :: pos_integer(),   % nanoseconds
                start :: integer(),        % monotonic nanoseconds
                stop :: integer()}).       % the same, when to stop

-type why() :: done | stopped | caller_down | {limit, eflambe_tracer:limit()}.

%% Samples until the duration is over, the caller goes or the run is
%% stopped; the backtrace depth is put back whatever happens.
-spec record(eflambe_session:session(), {pid(), reference()}, pos_integer(),
             pos_integer(), all | [pid()]) -> why().
record(Session, Watch, Hz, Duration, Pids) ->
    Depth = erlang:system_flag(backtrace_depth, ?BACKTRACE_DEPTH),
    Start = erlang:monotonic_time(nanosecond),
    Ticks = #ticks{session = Session, watch = Watch, period = 1000000000 div Hz,
                   start = Start, stop = Start + Duration * 1000000},
    try
        loop(Ticks, known(Pids), 1, Start)
    after
        erlang:system_flag(backtrace_depth, Depth)
    end.

%% Tick K is due at Start + K * Period: no drift, and a late tick is not
%% made up for twice: its samples weigh the time since the tick before
%% (Last), so that a sampler kept waiting by a busy node does not make
%% that node's processes look idle. Known is the list of processes the
%% sampler checks.
-spec loop(#ticks{}, known(), pos_integer(), integer()) -> why().
loop(#ticks{session = #{tracer := TracerState} = Session, watch = {Caller, CallerRef},
            period = Period, start = Start, stop = Stop} = Ticks, Known, K, Last) ->
    Due = Start + K * Period,
    Now = erlang:monotonic_time(nanosecond),
    Wait = max(0, (Due - Now) div 1000000),
    receive
        {eflambe_stop, From, StopRef} ->
            eflambe_session:halt(Session, stopped),
            From ! {StopRef, stopped},
            stopped;
        {eflambe_limit, Reason} ->
            {limit, Reason};
        {'DOWN', CallerRef, process, Caller, _} ->
            caller_down
    after Wait ->
            Tick = erlang:monotonic_time(nanosecond),
            {Samples, Known1} = samples(Known),
            _ = eflambe_tracer:record_samples(TracerState, Samples, max(Period, Tick - Last)),
            case Tick >= Stop of
                true -> done;
                false -> loop(Ticks, Known1, max(K + 1, (Tick - Start) div Period + 1), Tick)
            end
    end.

%% The processes to check: all, or the ones asked for that live here.
-spec known(all | [pid()]) -> known().
known(all) -> all;
known(Pids) -> {pids, 0, [P || P <- Pids, node(P) =:= node()]}.

%% The stacks of the processes on a CPU now, or waiting for one, and the
%% processes to check next tick.
%%
%% The processes busy last tick are asked first. Then the run queues say
%% how many tasks are active, and the others are checked only until that
%% many are found: idle processes cost nothing while the busy ones are
%% known. A process just woken up (the sampler itself) may be counted twice
%% for a moment: the count is read again now and then, the lowest kept.
%%
%% erlang:processes() scans the whole process table (about 200 us with the
%% default 262,144 slots, however few processes live): the sampler keeps the
%% list, drops the processes it finds dead, and takes the list again only
%% when it checked them all without finding every active task (a port may
%% be one) and some process is new (the process count is higher).
-spec samples(known()) -> {[{pid(), list()}], known()}.
samples(all) ->
    relist([]);
samples({Which, NBusy, Known}) ->
    {Again, Others} = lists:split(NBusy, Known),
    Before = active_tasks(),
    Rechecked = recheck(Again, #found{}),
    Left = case Which of
               pids -> all;
               all -> min(Before, active_tasks()) - length(Rechecked#found.samples)
           end,
    {#found{samples = Samples, busy = Busy, idle = Idle}, Unfound} = scan(Others, Left, Rechecked),
    Alive = lists:reverse(Busy, Idle),
    case Unfound andalso Which =:= all andalso
        erlang:system_info(process_count) > length(Alive) of
        false ->
            {Samples, {Which, length(Busy), Alive}};
        true ->
            relist(Samples)
    end.

%% Lists every process and checks them all, but for those already sampled
%% this tick.
-spec relist([{pid(), list()}]) -> {[{pid(), list()}], known()}.
relist(Samples) ->
    Sampled = [P || {P, _} <- Samples],
    {#found{samples = More, busy = Busy, idle = Idle}, _} =
        scan([P || P <- erlang:processes(), not lists:member(P, Sampled)], all, #found{}),
    {More ++ Samples, {all, length(Sampled) + length(Busy), Sampled ++ lists:reverse(Busy, Idle)}}.

%% Processes busy last tick: one request for the status and the stack
%% saves a round trip to a process that is likely still running.
-spec recheck([pid()], #found{}) -> #found{}.
recheck([], Found) ->
    Found;
recheck([P | Ps], Found) ->
    case erlang:process_info(P, [status, current_stacktrace]) of
        [{status, Status}, {current_stacktrace, Stack}] ->
            case on_cpu(Status) of
                true -> recheck(Ps, busy(P, Stack, Found));
                false -> recheck(Ps, idle(P, Found))
            end;
        undefined ->
            recheck(Ps, Found)
    end.

-spec busy(pid(), list(), #found{}) -> #found{}.
busy(P, Stack, #found{samples = Samples, busy = Busy} = Found) ->
    Found#found{samples = [{P, Stack} | Samples], busy = [P | Busy]}.

-spec idle(pid(), #found{}) -> #found{}.
idle(P, #found{idle = Idle} = Found) ->
    Found#found{idle = [P | Idle]}.

%% Tasks on the run queues or running, but for the sampler itself.
-spec active_tasks() -> integer().
active_tasks() ->
    erlang:statistics(total_active_tasks_all) - 1.

%% The other processes, until Left more busy ones are found (all: every
%% process is checked). The status is cheap to read when a process is not
%% running; a stack trace is asked for only when it is busy. Processes
%% found dead are left out. Also says whether busy ones are left unfound.
-spec scan([pid()], all | integer(), #found{}) -> {#found{}, boolean()}.
scan(Ps, Left, Found) ->
    scan(Ps, Left, ?RECOUNT_EVERY, Found).

-spec scan([pid()], all | integer(), non_neg_integer(), #found{}) -> {#found{}, boolean()}.
scan([], Left, _, Found) ->
    {Found, Left =:= all orelse Left > 0};
scan(Ps, Left, _, #found{idle = Idle} = Found) when is_integer(Left), Left =< 0 ->
    {Found#found{idle = Idle ++ Ps}, false};
scan(Ps, Left, 0, Found) ->
    scan(Ps, recount(Left, Found#found.samples), ?RECOUNT_EVERY, Found);
scan([P | Ps], Left, N, Found) when P =:= self() ->
    scan(Ps, Left, N, idle(P, Found));
scan([P | Ps], Left, N, Found) ->
    case erlang:process_info(P, status) of
        {status, Status} ->
            case on_cpu(Status) andalso erlang:process_info(P, current_stacktrace) of
                false ->
                    scan(Ps, Left, N - 1, idle(P, Found));
                {current_stacktrace, Stack} ->
                    scan(Ps, found(Left), N - 1, busy(P, Stack, Found));
                undefined ->
                    scan(Ps, Left, N - 1, Found)
            end;
        undefined ->
            scan(Ps, Left, N - 1, Found)
    end.

-spec recount(all | integer(), [{pid(), list()}]) -> all | integer().
recount(all, _) -> all;
recount(Left, Samples) -> min(Left, active_tasks() - length(Samples)).

-spec found(all | integer()) -> all | integer().
found(all) -> all;
found(Left) -> Left - 1.

-spec on_cpu(atom()) -> boolean().
on_cpu(running) -> true;
on_cpu(runnable) -> true;
on_cpu(garbage_collecting) -> true;
on_cpu(_) -> false.
