%% @private
%% One profiling run of eflambe:apply: checks, arms the trace patterns and
%% the caller's trace flags, runs the call, disarms whatever happened, then
%% folds the archive and delivers the flamegraph.
-module(eflambe_session).

-export([apply/2]).

%% Called through a fully qualified call, for its meta trace pattern.
-export([profiled/1]).

-compile({no_auto_import, [apply/2]}).

%% Each thread that may run a tracer callback gets its own ring: normal,
%% dirty CPU and dirty IO schedulers, and a few spare for other VM threads.
-define(SPARE_THREADS, 8).
-define(EVENT_BYTES, 32).

-spec apply(eflambe:fun_spec(), term()) -> {ok, term()} | {error, term()}.
apply(FunSpec, Options) ->
    case eflambe_options:parse(Options) of
        {ok, Opts} ->
            case target(FunSpec) of
                {ok, Target, Runner} -> apply_checked(Target, Runner, Opts);
                {error, _} = Error -> Error
            end;
        {error, _} = Error ->
            Error
    end.

-spec apply_checked(mfa_pattern(), fun(() -> term()), eflambe_options:opts()) ->
          {ok, term()} | {error, term()}.
apply_checked(Target, Runner, Opts) ->
    case erlang:trace_info(self(), tracer) of
        {tracer, []} -> run(Target, Runner, Opts);
        {tracer, Other} -> {error, {already_traced, self(), Other}}
    end.

-type mfa_pattern() :: {module(), atom(), arity() | '_'}.

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
    %% A tracer module that is not loaded makes the trace action fail silently.
    case code:ensure_loaded(eflambe_tracer) of
        {module, eflambe_tracer} -> run_loaded(Target, Runner, Opts);
        {error, Reason} -> {error, {cannot_load_tracer_nif, Reason}}
    end.

-spec run_loaded(mfa_pattern(), fun(() -> term()), eflambe_options:opts()) ->
          {ok, term()} | {error, term()}.
run_loaded(Target, Runner, #{buffer_size := BufferBytes} = Opts) ->
    Archive = temp_archive(),
    RingEvents = BufferBytes div ?EVENT_BYTES,
    case eflambe_tracer:start_session(Archive, RingEvents, thread_count(), self(), false,
                                      metadata(apply, Target, Opts)) of
        {ok, TracerState, MetaState} ->
            Guard = guard(self(), TracerState, Archive),
            Outcome = traced(Target, Runner, TracerState, MetaState),
            Delivered = finish(TracerState, Archive, Opts),
            Guard ! done,
            _ = file:delete(Archive),
            case {Outcome, Delivered} of
                {{raised, Class, Reason, Stack}, _} -> erlang:raise(Class, Reason, Stack);
                {{value, Value}, {ok, _}} when map_get(return, Opts) =:= value -> {ok, Value};
                {{value, _}, Delivered} -> Delivered
            end;
        {error, {Reason, _}} ->
            {error, {cannot_start, Reason, Archive}};
        {error, _} = Error ->
            Error
    end.

%% The window the folder keeps is the call of profiled/1: its meta trace
%% pattern marks entry and exit. This module is not call traced, so the
%% first frame of every stack is the user's function, and a recursive
%% target costs no meta event per call.
-spec traced(mfa_pattern(), fun(() -> term()), integer(), integer()) ->
          {value, term()} | {raised, atom(), term(), list()}.
traced(_Target, Runner, TracerState, MetaState) ->
    try
        arm(TracerState, MetaState),
        ?MODULE:profiled(Runner)
    of
        Value -> {value, Value}
    catch
        Class:Reason:Stack -> {raised, Class, Reason, Stack}
    after
        disarm()
    end.

-spec profiled(fun(() -> term())) -> term().
profiled(Runner) ->
    Runner().

-define(WINDOW, {?MODULE, profiled, 1}).

-spec arm(integer(), integer()) -> ok.
arm(TracerState, MetaState) ->
    _ = erlang:trace_pattern({'_', '_', '_'}, true, [local]),
    _ = erlang:trace_pattern(on_load, true, [local]),
    _ = erlang:trace_pattern({?MODULE, '_', '_'}, false, [local]),
    _ = erlang:trace_pattern(?WINDOW, [{'_', [], [{exception_trace}]}],
                             [{meta, eflambe_tracer, MetaState}]),
    _ = erlang:trace(self(), true, [call, return_to, arity, running, garbage_collection,
                                    set_on_spawn, {tracer, eflambe_tracer, TracerState}]),
    ok.

-spec disarm() -> ok.
disarm() ->
    _ = erlang:trace(self(), false, [all]),
    disarm_node().

%% The trace patterns, which concern every process on the node.
-spec disarm_node() -> ok.
disarm_node() ->
    _ = erlang:trace_pattern(?WINDOW, false, [meta]),
    _ = erlang:trace_pattern(on_load, false, [local]),
    _ = erlang:trace_pattern({'_', '_', '_'}, false, [local]),
    ok.

%% Stops the session once every trace event is delivered, then folds.
-spec finish(integer(), file:filename(), eflambe_options:opts()) ->
          {ok, term()} | {error, term()}.
finish(TracerState, Archive, Opts) ->
    Ref = erlang:trace_delivered(all),
    receive {trace_delivered, all, Ref} -> ok end,
    case eflambe_tracer:stop_session(TracerState) of
        {ok, _Stats} -> eflambe_output:deliver(Archive, Opts);
        {error, _} = Error -> Error
    end.

%% If the caller dies mid-call (a killed shell, say), nothing else would
%% ever disarm the node: a guard process does it, for that session only.
%% While the session runs no other can start, so disarming is safe.
-spec guard(pid(), integer(), file:filename()) -> pid().
guard(Caller, TracerState, Archive) ->
    spawn(fun() ->
                  Ref = monitor(process, Caller),
                  receive
                      done ->
                          ok;
                      {'DOWN', Ref, process, Caller, _} ->
                          case eflambe_tracer:running_session() of
                              TracerState ->
                                  disarm_node(),
                                  _ = eflambe_tracer:stop_session(TracerState),
                                  _ = file:delete(Archive),
                                  ok;
                              _ ->
                                  ok
                          end
                  end
          end).

-spec thread_count() -> pos_integer().
thread_count() ->
    erlang:system_info(schedulers) + erlang:system_info(dirty_cpu_schedulers)
        + erlang:system_info(dirty_io_schedulers) + ?SPARE_THREADS.

-spec temp_archive() -> file:filename().
temp_archive() ->
    Dir = case os:getenv("TMPDIR") of
              false -> "/tmp";
              "" -> "/tmp";
              D -> D
          end,
    filename:join(Dir, lists:flatten(io_lib:format("eflambe-~s-~b.eftrace",
                                                   [os:getpid(), erlang:unique_integer([positive])]))).

%% "key=value" lines kept in the archive header.
-spec metadata(atom(), mfa_pattern(), eflambe_options:opts()) -> iodata().
metadata(Mode, {M, F, A}, Opts) ->
    Lines = [{node, node()},
             {otp_release, erlang:system_info(otp_release)},
             {erts_version, erlang:system_info(version)},
             {start_time, calendar:system_time_to_rfc3339(erlang:system_time(second))},
             {mode, Mode},
             {target, io_lib:format("~p:~p/~p", [M, F, A])},
             {output_format, maps:get(output_format, Opts)}],
    [[atom_to_list(K), $=, value_text(V), $\n] || {K, V} <- Lines].

-spec value_text(term()) -> iodata().
value_text(V) when is_atom(V) -> atom_to_list(V);
value_text(V) -> V.
