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

-spec check_caller(mfa_pattern(), fun(() -> term()), eflambe_options:opts()) ->
          {ok, term()} | {error, term()}.
check_caller(Target, Runner, Opts) ->
    case erlang:trace_info(self(), tracer) of
        {tracer, []} -> run(Target, Runner, Opts);
        {tracer, Other} -> {error, {already_traced, self(), Other}}
    end.

%% The profiled function (for the archive's metadata), and a closure that
%% calls it.
-spec target(term()) -> {ok, mfa_pattern(), fun(() -> term())} | {error, term()}.
target({M, F, Args}) when is_atom(M), is_atom(F), is_list(Args) ->
    Arity = length(Args),
    _ = code:ensure_loaded(M),
    case erlang:function_exported(M, F, Arity) of
        true -> {ok, {M, F, Arity}, fun() -> erlang:apply(M, F, Args) end};
        false -> {error, {undefined_function, {M, F, Arity}}}
    end;
target({Fun, Args}) when is_function(Fun), is_list(Args) ->
    case erlang:fun_info(Fun, arity) of
        {arity, Arity} when Arity =:= length(Args) ->
            {ok, fun_target(Fun), fun() -> erlang:apply(Fun, Args) end};
        {arity, Arity} ->
            {error, {bad_arity, Fun, {expected, Arity}, {got, length(Args)}}}
    end;
target(Other) ->
    {error, {bad_function, Other, {expected, '{Module, Function, Args} | {Fun, Args}'}}}.

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
    Guard = guard(self(), maps:get(timeout, Opts)),
    Params = #{target => Target, root_pid => self(), root_frame => false, notify => Guard},
    case eflambe_session:start(apply, Params, Opts) of
        {ok, Session} ->
            Guard ! {session, Session},
            Outcome = traced(Runner, Session, Opts),
            Delivered = case eflambe_session:finish(Session, false, Opts) of
                            {ok, Data, Info} -> eflambe_output:write(Data, Info, Opts);
                            {error, _} = Error -> Error
                        end,
            Guard ! done,
            case {Outcome, Delivered} of
                {{raised, Class, Reason, Stack}, _} -> erlang:raise(Class, Reason, Stack);
                {{value, Value}, {ok, _}} when map_get(return, Opts) =:= value -> {ok, Value};
                {{value, _}, Delivered} -> Delivered
            end;
        {error, _} = Error ->
            Guard ! done,
            Error
    end.

%% The window the folder keeps is the call of profiled/1: its meta trace
%% pattern marks entry and exit. This module is not call traced, so the
%% first frame of every stack is the user's function, and a recursive
%% target costs no meta event per call.
-spec traced(fun(() -> term()), eflambe_session:session(), eflambe_options:opts()) ->
          {value, term()} | {raised, atom(), term(), list()}.
traced(Runner, #{tracer := TracerState, meta := MetaState}, Opts) ->
    try
        arm(TracerState, MetaState, Opts),
        ?MODULE:profiled(Runner)
    of
        Value -> {value, Value}
    catch
        Class:Reason:Stack -> {raised, Class, Reason, Stack}
    after
        _ = erlang:trace(self(), false, [all]),
        disarm_node()
    end.

-spec profiled(fun(() -> term())) -> term().
profiled(Runner) ->
    Runner().

-spec arm(integer(), integer(), eflambe_options:opts()) -> ok.
arm(TracerState, MetaState, Opts) ->
    eflambe_session:arm_local(Opts),
    _ = erlang:trace_pattern({?MODULE, '_', '_'}, false, [local]),
    _ = erlang:trace_pattern(?WINDOW, [{'_', [], [{exception_trace}]}],
                             [{meta, eflambe_tracer, MetaState}]),
    _ = erlang:trace(self(), true, [call, return_to, arity, running, garbage_collection,
                                    set_on_spawn, {tracer, eflambe_tracer, TracerState}]),
    ok.

%% The trace patterns, which concern every process on the node.
-spec disarm_node() -> ok.
disarm_node() ->
    _ = erlang:trace_pattern(?WINDOW, false, [meta]),
    eflambe_session:disarm_local().

%% The caller runs the profiled code, so it cannot watch itself: a guard
%% process does. It ends tracing (the call goes on) on eflambe:stop(), on
%% the timeout, or when the tracer reports a limit reached (max_events,
%% max_bytes); if the caller dies mid-call it disarms the node and ends the
%% session, that session only. While the session runs no other can start,
%% so disarming is safe.
-spec guard(pid(), timeout()) -> pid().
guard(Caller, Timeout) ->
    spawn(fun() ->
                  Ref = monitor(process, Caller),
                  receive
                      {session, Session} ->
                          eflambe_session:register_running(self()),
                          guard_loop(Caller, Ref, Session, deadline(Timeout));
                      done ->
                          ok
                  end
          end).

-spec deadline(timeout()) -> integer() | infinity.
deadline(infinity) -> infinity;
deadline(Ms) -> erlang:monotonic_time(millisecond) + Ms.

-spec guard_loop(pid(), reference(), eflambe_session:session(), integer() | infinity) -> ok.
guard_loop(Caller, Ref, #{tracer := TracerState} = Session, Deadline) ->
    Wait = case Deadline of
               infinity -> infinity;
               _ -> max(0, Deadline - erlang:monotonic_time(millisecond))
           end,
    receive
        done ->
            ok;
        {eflambe_stop, From, StopRef} ->
            eflambe_session:halt(Session, stopped),
            stop_tracing(Session),
            From ! {StopRef, stopped},
            guard_loop(Caller, Ref, Session, infinity);
        {eflambe_limit, _Reason} ->
            stop_tracing(Session),
            guard_loop(Caller, Ref, Session, infinity);
        {'DOWN', Ref, process, Caller, _} ->
            case eflambe_tracer:running_session() of
                TracerState ->
                    stop_tracing(Session),
                    eflambe_session:abort(Session);
                _ ->
                    ok
            end
    after Wait ->
            eflambe_session:halt(Session, timeout),
            stop_tracing(Session),
            guard_loop(Caller, Ref, Session, infinity)
    end.

-spec stop_tracing(eflambe_session:session()) -> ok.
stop_tracing(Session) ->
    disarm_node(),
    eflambe_session:untrace_all(Session).
