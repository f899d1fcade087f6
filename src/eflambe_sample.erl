%% @private
%% eflambe:sample: profiles the node (or some processes) by sampling, with
%% no call tracing: every period a sampler process takes the stack of each
%% process that is running or runnable, and the tracer NIF writes the
%% samples through the same rings, archive and folder as traces, each
%% weighing one period.
-module(eflambe_sample).

-export([sample/1]).

%% Stacks deeper than the VM's backtrace depth are cut by process_info:
%% raised for the run (a node-wide flag: crash reports show longer stack
%% traces meanwhile), put back after.
-define(BACKTRACE_DEPTH, 64).

-spec sample(term()) -> {ok, binary() | file:filename()} | {error, term()}.
sample(Options) ->
    case eflambe_options:parse(sample, Options) of
        {ok, #{node := Node} = Opts} when Node =/= node() ->
            eflambe_remote:sample(Node, Opts);
        {ok, #{fetch_archive := Path}} when Path =/= undefined ->
            {error, {fetch_archive, Path, "only with {node, Node}; here, use archive"}};
        {ok, Opts} ->
            run(Opts);
        {error, _} = Error ->
            Error
    end.

-spec run(eflambe_options:opts()) -> {ok, binary() | file:filename()} | {error, term()}.
run(Opts) ->
    eflambe_session:owned(fun(Caller) -> owner(Caller, Opts) end, sample_failed).

-spec owner(pid(), eflambe_options:opts()) -> {ok, term()} | {error, term()}.
owner(Caller, #{hz := Hz, duration := Duration} = Opts) ->
    %% Samples come a tick at a time: the flusher need not wake up often.
    Params = #{target => {node(), Hz}, notify => self(), flusher_idle_ms => 50},
    case eflambe_session:start(sample, Params, Opts) of
        {ok, Session} ->
            eflambe_session:register_running(self()),
            CallerRef = monitor(process, Caller),
            Depth = erlang:system_flag(backtrace_depth, ?BACKTRACE_DEPTH),
            Period = 1000000000 div Hz,
            Start = erlang:monotonic_time(nanosecond),
            Why = try
                      loop(Session, Opts, Period, Start, 1, Start + Duration * 1000000,
                           {Caller, CallerRef})
                  after
                      erlang:system_flag(backtrace_depth, Depth)
                  end,
            case Why of
                caller_down ->
                    eflambe_session:abort(Session),
                    {error, caller_down};
                _ ->
                    case eflambe_session:finish(Session, false, Opts) of
                        {ok, Data, Info} -> eflambe_output:write(Data, Info, Opts);
                        {error, _} = Error -> Error
                    end
            end;
        {error, _} = Error ->
            Error
    end.

%% Tick K is due at Start + K * Period: no drift, and a late tick is not
%% made up for twice.
-spec loop(eflambe_session:session(), eflambe_options:opts(), pos_integer(), integer(),
           pos_integer(), integer(), {pid(), reference()}) ->
          done | stopped | caller_down | {limit, atom()}.
loop(#{tracer := TracerState} = Session, Opts, Period, Start, K, End,
     {Caller, CallerRef} = Watch) ->
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
            _ = eflambe_tracer:record_samples(TracerState, samples(Opts), Period),
            case Tick >= End of
                true -> done;
                false -> loop(Session, Opts, Period, Start,
                              max(K + 1, (Tick - Start) div Period + 1), End, Watch)
            end
    end.

%% The processes on a CPU now, or waiting for one. The status is cheap to
%% read; a stack trace is built only for those.
-spec samples(eflambe_options:opts()) -> [{pid(), list()}].
samples(#{pids := Pids}) ->
    Self = self(),
    [{P, Stack} || P <- case Pids of all -> erlang:processes(); _ -> Pids end, P =/= Self,
                   node(P) =:= node(),
                   on_cpu(erlang:process_info(P, status)),
                   {current_stacktrace, Stack} <- [erlang:process_info(P, current_stacktrace)]].

-spec on_cpu(term()) -> boolean().
on_cpu({status, running}) -> true;
on_cpu({status, runnable}) -> true;
on_cpu({status, garbage_collecting}) -> true;
on_cpu(_) -> false.
