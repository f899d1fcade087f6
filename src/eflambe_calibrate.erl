%% @private
%% What a trace event costs the traced process on this node: the VM's call
%% into the tracer NIF and ours, as wall time added to the process's run.
%% Measured once per node (the first run, 40-70 ms; kept in a
%% persistent term), written into every archive, and taken out of the
%% frames' time by the folder (doc/archive-format.adoc, cost_* lines).
%%
%% The intervals between calls and returns (the bulk of a run's events)
%% are measured as they are in a run: the mean interval of each pair of
%% kinds (call then call, call then return, ...) in the archive of a
%% recursion that does nothing else (efl_cost.h). Scheduling's cost is a
%% difference of differences: a loop of 2N yields against one of N, traced
%% against untraced, so that everything but the events cancels; the least
%% of several tries is kept (the machine's other work only ever adds time).
-module(eflambe_calibrate).

-export([costs/0, calibrate/0]).
%% The loops whose calls are traced (local patterns on them alone).
-export([yielding/1, tree/1]).

-type kind() :: call | return_to.
-type costs() :: #{call := non_neg_integer(), return_to := non_neg_integer(),
                   sched := non_neg_integer(), {kind(), kind()} => non_neg_integer()}.
-export_type([costs/0]).

-define(KEY, {?MODULE, costs}).
-define(TRIES, 7).
-define(YIELDS, 500).
%% Where the node cannot be measured (a run in progress, the tracer not
%% loadable, a node too busy to finish in time): figures measured on a
%% 2-core KVM guest, OTP 25, kept as the node's (not measured again at
%% every run).
-define(FALLBACK, #{call => 200, return_to => 80, sched => 120,
                    {call, call} => 184, {call, return_to} => 107,
                    {return_to, call} => 179, {return_to, return_to} => 98}).
-define(TREE, 15).

%% The node's figures, measured on first use.
-spec costs() -> costs().
costs() ->
    case persistent_term:get(?KEY, undefined) of
        undefined ->
            Costs = calibrated(),
            persistent_term:put(?KEY, Costs),
            Costs;
        Costs ->
            Costs
    end.

%% Measured in a process of its own, which ends its session whatever
%% happens to the caller (a caller killed while calibrating left the node
%% with a session running: every run after was already_running).
-spec calibrated() -> costs().
calibrated() ->
    Parent = self(),
    {Pid, Ref} = spawn_monitor(fun() -> Parent ! {self(), calibrate()} end),
    receive
        {Pid, Result} ->
            demonitor(Ref, [flush]),
            case Result of
                {ok, Costs} -> Costs;
                {error, _} -> ?FALLBACK
            end;
        {'DOWN', Ref, process, Pid, _} ->
            ?FALLBACK
    end.

%% Measures now, in a session of its own (none may be running).
-spec calibrate() -> {ok, costs()} | {error, term()}.
calibrate() ->
    Archive = eflambe_session:temp_archive(),
    #{event_bytes := EventBytes} = eflambe_tracer:capabilities(),
    Args = #{archive => eflambe_options:native_name(Archive), meta => "mode=calibrate\n",
             ring_events => (1 bsl 20) div EventBytes,
             threads => eflambe_session:thread_count()},
    case eflambe_tracer:start_session(Args) of
        {ok, TracerState, _, _} ->
            try
                Measured = measure(TracerState),
                Delivered = erlang:trace_delivered(all),
                receive {trace_delivered, all, Delivered} -> ok end,
                _ = eflambe_tracer:stop_session(TracerState),
                with_pairs(Measured, eflambe_tracer:interval_costs(eflambe_options:native_name(Archive)))
            after
                _ = eflambe_tracer:running_session() =:= TracerState
                    andalso eflambe_tracer:stop_session(TracerState),
                _ = file:delete(Archive)
            end;
        {error, _} = Error ->
            Error
    end.

-spec measure(integer()) -> {ok, map()} | {error, term()}.
measure(TracerState) ->
    Loops = [{?MODULE, F, 1} || F <- [yielding, tree]],
    _ = [erlang:trace_pattern(MFA, true, [local]) || MFA <- Loops],
    Parent = self(),
    {Pid, Ref} = spawn_monitor(fun() -> Parent ! {self(), in_process(TracerState)} end),
    try
        receive
            {Pid, Costs} ->
                demonitor(Ref, [flush]),
                {ok, Costs};
            {'DOWN', Ref, process, Pid, Reason} -> {error, {calibration_failed, Reason}}
        after 10000 ->
                exit(Pid, kill),
                {error, {calibration_failed, timeout}}
        end
    after
        _ = [erlang:trace_pattern(MFA, false, [local]) || MFA <- Loops]
    end.

%% In the measured process, which traces itself.
-spec in_process(integer()) -> #{sched := non_neg_integer()}.
in_process(TracerState) ->
    Tracer = {tracer, eflambe_tracer, TracerState},
    %% Calls and returns as in a run: their intervals, in the archive (the
    %% garbage collections the trace terms cause apart, as in a run).
    _ = erlang:trace(self(), true, [call, return_to, arity, garbage_collection, Tracer]),
    _ = [tree(?TREE) || _ <- lists:seq(1, ?TRIES)],
    _ = erlang:trace(self(), false, [all]),
    %% Scheduling: the wall time a yield adds, less its call's.
    YieldU = extra(fun yielding/1, ?YIELDS),
    _ = erlang:trace(self(), true, [call, arity, running, Tracer]),
    YieldT = extra(fun yielding/1, ?YIELDS),
    _ = erlang:trace(self(), false, [all]),
    #{sched => max(0, round(((YieldT - YieldU) / ?YIELDS) / 2))}.

%% The pairs' means, and each kind's own cost: a call's is what an interval
%% between two calls costs, a return's what one between two returns does;
%% a yield's call is taken out of the scheduling figure.
-spec with_pairs({ok, map()} | {error, term()}, {ok, map()} | {error, term()}) ->
          {ok, costs()} | {error, term()}.
with_pairs({ok, #{sched := Sched}}, {ok, #{{call, call} := Call, {return_to, return_to} := Return} = Pairs}) ->
    {ok, Pairs#{call => Call, return_to => Return, sched => max(0, Sched - Call div 2)}};
with_pairs({ok, _}, {ok, Pairs}) -> {error, {calibration_failed, {too_few_events, Pairs}}};
with_pairs({ok, _}, {error, _} = Error) -> Error;
with_pairs({error, _} = Error, _) -> Error.

%% What N more iterations of Loop take: Loop(2N) - Loop(N), in ns, the
%% least of several tries.
-spec extra(fun((non_neg_integer()) -> term()), pos_integer()) -> number().
extra(Loop, N) ->
    lists:min([timed(Loop, 2 * N) - timed(Loop, N) || _ <- lists:seq(1, ?TRIES)]).

-spec timed(fun((non_neg_integer()) -> term()), non_neg_integer()) -> integer().
timed(Loop, N) ->
    T0 = erlang:monotonic_time(nanosecond),
    _ = Loop(N),
    erlang:monotonic_time(nanosecond) - T0.

%% Calls and returns in every order (call then call, call then return...),
%% nothing else: 2 * fib(N + 1) - 1 calls.
-spec tree(non_neg_integer()) -> non_neg_integer().
tree(0) -> 0;
tree(1) -> 1;
tree(N) -> tree(N - 1) + tree(N - 2).

%% One call event, and the process scheduled out and in, an iteration.
-spec yielding(non_neg_integer()) -> ok.
yielding(0) -> ok;
yielding(N) -> erlang:yield(), yielding(N - 1).
