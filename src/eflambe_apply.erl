%% @private
%% eflambe:apply: profiles one call made by the calling process (and the
%% processes it spawns), in the caller itself.
-module(eflambe_apply).

-export([apply/2]).
%% Called through a fully qualified call, for its meta trace pattern.
-export([profiled/1]).

-compile({no_auto_import, [apply/2]}).

-define(WINDOW, {?MODULE, profiled, 1}).

-type mfa_pattern() :: {module(), atom(), arity() | '_'}.

-spec apply(eflambe:fun_spec(), term()) -> {ok, term()} | {error, term()}.
apply(FunSpec, Options) ->
    case eflambe_options:parse(apply, Options) of
        {ok, Opts} ->
            case target(FunSpec) of
                {ok, Target, Runner} -> check_caller(Target, Runner, Opts);
                {error, _} = Error -> Error
            end;
        {error, _} = Error ->
            Error
    end.

%% Refused when the caller has a tracer, or when another tracer traces
%% some process's calls (the run's patterns would flood it, and their
%% removal end its own). The processes other tracers trace are looked up
%% once (a look at every process): following leaves them alone.
-spec check_caller(mfa_pattern(), fun(() -> term()), eflambe_options:opts()) ->
          {ok, term()} | {error, term()}.
check_caller(Target, Runner, Opts) ->
    case erlang:trace_info(self(), tracer) of
        {tracer, []} ->
            Others = eflambe_session:traced_by_others(eflambe_session:traced()),
            case eflambe_session:tracing_calls(Others) of
                [] ->
                    run(Target, Runner, Opts#{traced_by_others => Others});
                Pids ->
                    {error, {tracer_in_use, lists:sublist(Pids, 5)}}
            end;
        {tracer, Other} ->
            {error, {already_traced, self(), Other}}
    end.

%% The profiled function (for the archive's metadata), and a closure that
%% calls it.
-spec target(term()) -> {ok, mfa_pattern(), fun(() -> term())} | {error, term()}.
target({M, F, Args} = Spec) when is_atom(M), is_atom(F), is_list(Args) ->
    target_mfa(Spec, eflambe_options:proper_list(Args));
target({Fun, Args} = Spec) when is_function(Fun), is_list(Args) ->
    target_fun(Spec, eflambe_options:proper_list(Args));
%% A fun of no arguments on its own (`fn -> ... end' in Elixir).
target(Fun) when is_function(Fun, 0) ->
    target_fun({Fun, []}, true);
target(Other) ->
    bad_function(Other).

-spec bad_function(term()) -> {error, term()}.
bad_function(Other) ->
    {error, {bad_function, Other, {expected, '{Module, Function, Args} | {Fun, Args} | Fun/0'}}}.

-spec target_mfa({module(), atom(), list()}, boolean()) ->
          {ok, mfa_pattern(), fun(() -> term())} | {error, term()}.
target_mfa(Spec, false) ->
    bad_function(Spec);
target_mfa({M, F, Args}, true) ->
    Arity = length(Args),
    _ = code:ensure_loaded(M),
    case erlang:function_exported(M, F, Arity) of
        true -> {ok, {M, F, Arity}, fun() -> erlang:apply(M, F, Args) end};
        false -> {error, {undefined_function, {M, F, Arity}}}
    end.

-spec target_fun({function(), list()}, boolean()) ->
          {ok, mfa_pattern(), fun(() -> term())} | {error, term()}.
target_fun(Spec, false) ->
    bad_function(Spec);
target_fun({Fun, Args}, true) ->
    case erlang:fun_info(Fun, arity) of
        {arity, Arity} when Arity =:= length(Args) ->
            {ok, fun_target(Fun), fun() -> erlang:apply(Fun, Args) end};
        {arity, Arity} ->
            {error, {bad_arity, Fun, {expected, Arity}, {got, length(Args)}}}
    end.

%% A local fun runs as a compiled function named '-f/0-fun-0-' whose arity
%% counts the captured variables too.
-spec fun_target(function()) -> mfa_pattern().
fun_target(Fun) ->
    {module, M} = erlang:fun_info(Fun, module),
    {name, F} = erlang:fun_info(Fun, name),
    case erlang:fun_info(Fun, type) of
        {type, external} ->
            {arity, A} = erlang:fun_info(Fun, arity),
            {M, F, A};
        {type, local} ->
            {M, F, '_'}
    end.

-spec run(mfa_pattern(), fun(() -> term()), eflambe_options:opts()) ->
          {ok, term()} | {error, term()}.
run(Target, Runner, Opts) ->
    case guard(self(), Opts) of
        {ok, Guard} -> run(Target, Runner, Opts, Guard);
        {error, _} = Error -> Error
    end.

-spec run(mfa_pattern(), fun(() -> term()), eflambe_options:opts(), pid()) ->
          {ok, term()} | {error, term()}.
run(Target, Runner, Opts, Guard) ->
    Params = #{target => Target, root_pid => self(), root_frame => false, notify => Guard},
    try eflambe_session:start(apply, Params, Opts) of
        {ok, Session} ->
            {Outcome, Outlived} = case armed(Guard, Session) of
                                      ok -> traced(Runner, Session, maps:get(follow, Opts));
                                      {error, _} = NotArmed -> {NotArmed, false}
                                  end,
            Stopped = stopped(Guard, Session),
            %% A run that ended before its call did (timeout, stop()) cleared
            %% its tokens then; the call spread its own afterwards.
            _ = Outlived andalso maps:get(follow, Opts) =/= false andalso
                eflambe_tracer:running_session() =:= undefined andalso
                eflambe_follow:clear_tokens(),
            Delivered = case eflambe_session:deliver(Session, Stopped, false, Opts) of
                            {ok, Data, Info} -> eflambe_output:write(Data, Info, Opts);
                            {error, _} = Error -> Error
                        end,
            case {Outcome, Delivered} of
                {{error, _} = NotRun, _} -> NotRun;
                {{raised, Class, Reason, Stack}, _} -> erlang:raise(Class, Reason, Stack);
                {{value, Value}, {ok, _}} when map_get(return, Opts) =:= value -> {ok, Value};
                {{value, _}, {ok, _}} -> Delivered;
                %% The call ran: its value is not lost with its profile.
                {{value, Value}, {error, Reason}} -> {error, {profile_lost, Reason, {value, Value}}}
            end;
        {error, _} = Error ->
            Error
    after
        Guard ! done
    end.

%% (OTP 25's spec of erlang:trace_info/2 leaves out tracer modules:
%% {tracer, {Module, State}}, which it does return.)
-dialyzer({no_match, traced/3}).
%% The window the folder keeps is the call of profiled/1: its meta trace
%% pattern marks entry and exit. This module is not call traced, so the
%% first frame of every stack is the user's function, and a recursive
%% target costs no meta event per call. The guard armed the node and
%% disarms it (which a timeout may do long before the call returns: the
%% call outlived its run, the second element).
-spec traced(fun(() -> term()), eflambe_session:session(), eflambe_follow:follow()) ->
          {{value, term()} | {raised, atom(), term(), list()}, boolean()}.
traced(Runner, #{tracer := TracerState}, Follow) ->
    Mark = eflambe_follow:mark(Follow),
    Outcome = try
                  ?MODULE:profiled(Runner)
              of
                  Value -> {value, Value}
              catch
                  Class:Reason:Stack -> {raised, Class, Reason, Stack}
              end,
    eflambe_follow:unmark(Mark),
    %% Unless a later run traces this process by now.
    case erlang:trace_info(self(), tracer) of
        {tracer, {eflambe_tracer, TracerState}} ->
            erlang:trace(self(), false, [all]),
            {Outcome, false};
        _ ->
            {Outcome, true}
    end.

-spec profiled(fun(() -> term())) -> term().
profiled(Runner) ->
    Runner().

%% The trace patterns and the caller's trace flags, set by the guard: the
%% one process that arms and disarms, so a stop() that comes early cannot
%% disarm before the arming it would undo.
-spec arm(pid(), eflambe_session:session(), eflambe_options:opts()) -> ok.
arm(Caller, #{tracer := TracerState, meta := MetaState} = Session, Opts) ->
    eflambe_session:arm_local(Opts),
    _ = erlang:trace_pattern({?MODULE, '_', '_'}, false, [local]),
    _ = erlang:trace_pattern(?WINDOW, [{'_', [], [{exception_trace}]}],
                             [{meta, eflambe_tracer, MetaState}]),
    _ = erlang:trace(Caller, true, [call, return_to, arity, running, garbage_collection, 'receive',
                                    set_on_spawn, {tracer, eflambe_tracer, TracerState}
                                    | eflambe_follow:flags(maps:get(follow, Opts))]),
    eflambe_follow:arm(maps:get(follow, Opts), [Caller], Session,
                       maps:get(traced_by_others, Opts, [])).

%% Hands the session to the guard, which arms the node; ok once it has.
-spec armed(pid(), eflambe_session:session()) -> ok | {error, term()}.
armed(Guard, #{tracer := TracerState} = Session) ->
    Ref = monitor(process, Guard),
    Guard ! {session, Session},
    receive
        {Guard, armed} ->
            demonitor(Ref, [flush]),
            ok;
        {'DOWN', Ref, process, Guard, Reason} ->
            _ = eflambe_session:recover(TracerState),
            {error, {apply_failed, Reason}}
    end.

%% The trace patterns, which concern every process on the node.
-spec disarm_node() -> ok.
disarm_node() ->
    _ = erlang:trace_pattern(?WINDOW, false, [meta]),
    eflambe_follow:disarm(),
    eflambe_session:disarm_local().

%% The session, stopped: by the guard, now or earlier (a timeout, stop(),
%% a limit); by this process if the guard is gone (killed).
-spec stopped(pid(), eflambe_session:session()) -> {ok, map()} | {error, term()}.
stopped(Guard, #{tracer := TracerState}) ->
    Ref = monitor(process, Guard),
    Guard ! {stop_session, self(), Ref},
    receive
        {Ref, Stopped} ->
            demonitor(Ref, [flush]),
            Stopped;
        {'DOWN', Ref, process, Guard, _} ->
            eflambe_session:recover(TracerState)
    end.

%% The caller runs the profiled code, so it cannot watch itself: a guard
%% process does, and it alone disarms the node and stops the session: on
%% eflambe:stop(), on the timeout, when the tracer reports a limit reached
%% (max_events, max_bytes), which ends tracing and frees the node while
%% the call goes on, and when the call returns. If the caller dies mid-call
%% it ends the session, that session only, and deletes its archive. It
%% takes the run's name before the session starts: a stop() that comes
%% while it arms is answered once it has armed.
-spec guard(pid(), eflambe_options:opts()) -> {ok, pid()} | {error, already_running}.
guard(Caller, #{timeout := Timeout} = Opts) ->
    Guard = spawn(fun() ->
                          Ref = monitor(process, Caller),
                          Registered = eflambe_session:register_running(self()),
                          Caller ! {self(), Registered},
                          receive
                              {session, Session} when Registered =:= ok ->
                                  guarding(Caller, Ref, Session, Opts,
                                           eflambe_session:deadline(Timeout));
                              done ->
                                  ok;
                              {'DOWN', Ref, process, Caller, _} ->
                                  ok
                          end
                  end),
    receive
        {Guard, ok} -> {ok, Guard};
        {Guard, {error, _} = Taken} -> Guard ! done, Taken
    end.

%% Arms, then guards. Should the guard's own code fail, arming too (a
%% caller killed before it was armed: erlang:trace/3 raises), the node is
%% disarmed all the same, and a dead caller's run aborted; a stop() that
%% waits is answered.
-spec guarding(pid(), reference(), eflambe_session:session(), eflambe_options:opts(),
               integer() | infinity) -> ok.
guarding(Caller, Ref, Session, Opts, Deadline) ->
    try
        arm(Caller, Session, Opts),
        Caller ! {self(), armed},
        guard_loop(Caller, Ref, Session, Deadline, running)
    catch
        Class:Reason:Stack ->
            logger:error("eflambe: apply's guard failed: ~p", [{Class, Reason, Stack}]),
            _ = (catch stop(Session, running)),
            _ = is_process_alive(Caller) orelse (catch eflambe_session:abort(Session)),
            answer_stops()
    end.

-type state() :: running | {stopped, {ok, map()} | {error, term()}}.

-spec guard_loop(pid(), reference(), eflambe_session:session(), integer() | infinity, state()) ->
          ok.
guard_loop(Caller, Ref, Session, Deadline, State) ->
    %% A receive waits at most 2^32-1 ms: longer timeouts wait in steps.
    Wait = case Deadline of
               infinity -> infinity;
               _ -> min(16#FFFFFFFF, max(0, Deadline - erlang:monotonic_time(millisecond)))
           end,
    receive
        done ->
            ok;
        {stop_session, From, StopRef} ->
            Stopped = stop(Session, State),
            From ! {StopRef, Stopped},
            guard_loop(Caller, Ref, Session, infinity, {stopped, Stopped});
        {eflambe_stop, From, StopRef} ->
            _ = State =:= running andalso eflambe_session:halt(Session, stopped),
            Stopped = stop(Session, State),
            From ! {StopRef, stopped},
            guard_loop(Caller, Ref, Session, infinity, {stopped, Stopped});
        {eflambe_limit, _Reason} ->
            guard_loop(Caller, Ref, Session, infinity, {stopped, stop(Session, State)});
        {'DOWN', Ref, process, Caller, _} ->
            _ = stop(Session, State),
            eflambe_session:abort(Session)
    after Wait ->
            case erlang:monotonic_time(millisecond) >= Deadline of
                true ->
                    _ = State =:= running andalso eflambe_session:halt(Session, timeout),
                    guard_loop(Caller, Ref, Session, infinity, {stopped, stop(Session, State)});
                false ->
                    guard_loop(Caller, Ref, Session, Deadline, State)
            end
    end.

%% What stop() calls came, answered: the run is over.
-spec answer_stops() -> ok.
answer_stops() ->
    receive
        {eflambe_stop, From, StopRef} -> From ! {StopRef, stopped}, answer_stops()
    after 0 -> ok
    end.

%% Disarms the node and stops the session, once.
-spec stop(eflambe_session:session(), state()) -> {ok, map()} | {error, term()}.
stop(Session, running) ->
    disarm_node(),
    %% (eflambe_session:stop/1 clears the traced processes' flags.)
    %% The next run's owner takes the name.
    eflambe_session:unregister_running(),
    eflambe_session:stop(Session);
stop(_Session, {stopped, Stopped}) ->
    Stopped.
