%% @private
%% eflambe:capture: profiles the next N calls of a function, made by any
%% process on the node, triggered at the function's entry.
%%
%% A meta trace pattern on the target runs a match-spec `trace' action in
%% the caller at entry: it switches call tracing on in that process, for
%% that call. The NIF's meta tracer admits at most N calls (one unit of
%% budget per outermost call; recursion is free), counts their depth, and
%% tells the owner of the run as each one ends; outside a captured call the
%% process tracer answers `remove', which clears the process's flags.
-module(eflambe_capture).

-export([capture/3, parsed/3]).

-define(MAX_COUNT, 65536).
%% How often the owner checks that the target's pattern is still there
%% (reloading a module drops its trace patterns).
-define(CHECK_MS, 1000).

-spec capture(term(), term(), term()) -> {ok, list()} | {ok, list(), list()} | {error, term()}.
capture(MFA, N, Options) ->
    case check_count(N) of
        ok ->
            case eflambe_options:parse(capture, Options) of
                {ok, #{nodes := Nodes} = Opts} when Nodes =/= undefined ->
                    eflambe_cluster:capture(Nodes, MFA, N, Opts);
                {ok, Opts} ->
                    parsed(MFA, N, Opts);
                {error, _} = Error ->
                    Error
            end;
        {error, _} = Error ->
            Error
    end.

%% A capture on one node, this one or {node, Node}, its options parsed.
-spec parsed(term(), pos_integer(), eflambe_options:opts()) -> {ok, list()} | {error, term()}.
parsed(MFA, N, #{node := Node} = Opts) when Node =/= node() ->
    eflambe_remote:capture(Node, MFA, N, Opts);
parsed(_MFA, _N, #{fetch_archive := Path}) when Path =/= undefined ->
    {error, {fetch_archive, Path, "only with {node, Node}; here, use archive"}};
parsed(MFA, N, Opts) ->
    case check_target(MFA) of
        ok -> run(MFA, N, Opts);
        {error, _} = Error -> Error
    end.

-spec check_count(term()) -> ok | {error, term()}.
check_count(N) when is_integer(N), N >= 1, N =< ?MAX_COUNT -> ok;
check_count(N) -> {error, {bad_count, N, {expected_between, 1, ?MAX_COUNT}}}.

%% The function must exist (local functions are fine).
-spec check_target(term()) -> ok | {error, term()}.
check_target({M, F, A} = MFA) when is_atom(M), is_atom(F), is_integer(A), A >= 0, A =< 255 ->
    check_function(MFA);
check_target(Other) ->
    {error, {bad_function, Other, {expected, '{Module, Function, Arity}'}}}.

-spec check_function(mfa()) -> ok | {error, term()}.
check_function({M, F, A} = MFA) ->
    case code:ensure_loaded(M) of
        {module, M} ->
            case lists:member({F, A}, M:module_info(functions)) of
                true -> ok;
                false -> {error, {undefined_function, MFA}}
            end;
        {error, Reason} ->
            {error, {cannot_load_module, M, Reason}}
    end.

%% Nobody else may be tracing: a capture replaces the tracer of the
%% processes it traces and clears all local call patterns when it ends.
%% Checked once the node is this run's (a run in progress has patterns
%% everywhere: it is already_running, not "traced").
-spec check_no_tracing(mfa(), eflambe_follow:follow()) -> ok | {error, term()}.
check_no_tracing(MFA, Follow) ->
    case [P || {P, _} <- eflambe_session:traced()] of
        [] ->
            case {erlang:trace_info(MFA, traced), erlang:trace_info(MFA, meta)} of
                {{traced, false}, {meta, false}} -> eflambe_follow:check_tokens(Follow);
                _ -> {error, {target_already_traced, MFA}}
            end;
        Traced ->
            {error, {tracer_in_use, lists:sublist(Traced, 5)}}
    end.

%% The run has an owner process of its own, so eflambe:stop() can reach it
%% and the caller's death ends it.
-spec run(mfa(), pos_integer(), eflambe_options:opts()) ->
          {ok, list()} | {error, term()}.
run(MFA, N, Opts) ->
    eflambe_session:owned(fun(Caller) -> owner(Caller, MFA, N, Opts) end, capture_failed).

-spec owner(pid(), mfa(), pos_integer(), eflambe_options:opts()) ->
          {ok, list()} | {error, term()}.
owner(Caller, MFA, N, #{every := Every, arm := Arm} = Opts) ->
    Params = #{target => MFA, root_frame => true, budget => N, every => Every,
               notify => self(), lazy => Arm =:= lazy},
    case eflambe_session:start(capture, Params, Opts) of
        {ok, Session} ->
            case check_no_tracing(MFA, maps:get(follow, Opts)) of
                ok ->
                    Record = fun(Watch) -> record(MFA, N, Session, Watch, Opts) end,
                    case eflambe_session:watched(Caller, Session, Record) of
                        {ok, Why} -> results(Session, Why, Opts);
                        {error, _} = Error -> Error
                    end;
                {error, _} = Error ->
                    eflambe_session:abort(Session),
                    Error
            end;
        {error, _} = Error ->
            Error
    end.

%% Arms the target, waits for the calls, and disarms whatever happens.
-spec record(mfa(), pos_integer(), eflambe_session:session(), {pid(), reference()},
             eflambe_options:opts()) -> why().
record(MFA, N, Session, Watch, #{timeout := Timeout, arm := Arm} = Opts) ->
    try
        _ = Arm =:= eager andalso arm_node(Session, Opts),
        arm(MFA, Session, Opts),
        wait(MFA, N, eflambe_session:deadline(Timeout), {Watch, Session, Opts})
    after
        disarm(MFA),
        eflambe_session:untrace_all(Session)
    end.

%% With Spawned, the processes a captured call spawns are traced too (they
%% inherit the flags; the tracer adopts them on their spawn event) and
%% their stacks go into that call's flamegraph.
-spec arm(mfa(), eflambe_session:session(), eflambe_options:opts()) -> ok.
arm(MFA, #{tracer := TracerState, meta := MetaState},
    #{spawned := Spawned, follow := Follow}) ->
    Flags = [call, return_to, arity, running, garbage_collection, 'receive',
             {{tracer, eflambe_tracer, TracerState}}]
        ++ [F || Spawned, F <- [procs, set_on_spawn]] ++ eflambe_follow:flags(Follow),
    Spec = eflambe_follow:capture_spec(Follow, [{trace, [], Flags}, {exception_trace}]),
    1 = erlang:trace_pattern(MFA, Spec, [{meta, eflambe_tracer, MetaState}]),
    ok.

%% The node's call patterns (every function's local pattern, following's):
%% at once ({arm, eager}), or once the first call comes ({arm, lazy}:
%% until then only the target carries a pattern, and the rest of the node
%% runs at full speed; the calls until these are in place are passed
%% over, as they could not be recorded from their entry).
-spec arm_node(eflambe_session:session(), eflambe_options:opts()) -> ok.
arm_node(Session, #{follow := Follow} = Opts) ->
    eflambe_session:arm_local(Opts),
    %% (No process was traced by another tracer: check_no_tracing/2.)
    eflambe_follow:arm(Follow, [], Session, []).

-spec disarm(mfa()) -> ok.
disarm(MFA) ->
    _ = erlang:trace_pattern(MFA, false, [meta]),
    eflambe_follow:disarm(),
    eflambe_session:disarm_local().

-type why() :: done | timeout | stopped | caller_down | {target_reloaded, mfa()}
             | {limit, eflambe_tracer:limit()}.

%% (OTP 25's spec of erlang:trace_info/2 leaves out meta tracer modules:
%% {meta, {Module, State}}, which it does return.)
-dialyzer({no_match, wait/4}).
-spec wait(mfa(), non_neg_integer(), integer() | infinity,
           {{pid(), reference()}, eflambe_session:session(), eflambe_options:opts()}) -> why().
wait(_MFA, 0, _Deadline, _Owner) ->
    done;
wait(MFA, Left, Deadline, {{Caller, CallerRef}, #{meta := MetaState} = Session, Opts} = Owner) ->
    Ms = case Deadline of
             infinity -> ?CHECK_MS;
             _ -> max(0, min(?CHECK_MS, Deadline - erlang:monotonic_time(millisecond)))
         end,
    receive
        eflambe_capture_done ->
            told(maps:get(progress, Opts)),
            wait(MFA, Left - 1, Deadline, Owner);
        eflambe_capture_first ->
            arm_node(Session, Opts),
            _ = eflambe_tracer:capture_ready(maps:get(tracer, Session)),
            wait(MFA, Left, Deadline, Owner);
        {eflambe_stop, From, StopRef} ->
            From ! {StopRef, stopped},
            stopped;
        {eflambe_limit, Reason} ->
            {limit, Reason};
        {'DOWN', CallerRef, process, Caller, _} ->
            caller_down
    after Ms ->
            %% After a reload the new code has no meta pattern ({meta, []}).
            case erlang:trace_info(MFA, meta) of
                {meta, {eflambe_tracer, MetaState}} when Deadline =/= infinity ->
                    case erlang:monotonic_time(millisecond) >= Deadline of
                        true -> timeout;
                        false -> wait(MFA, Left, Deadline, Owner)
                    end;
                {meta, {eflambe_tracer, MetaState}} ->
                    wait(MFA, Left, Deadline, Owner);
                _ ->
                    {target_reloaded, MFA}
            end
    end.

%% A capture over several nodes counts the calls of all (eflambe_cluster).
-spec told(pid() | undefined) -> ok.
told(undefined) ->
    ok;
told(Progress) ->
    Progress ! {eflambe_captured, node()},
    ok.

%% One result per captured call that ended, in the order they ended.
-spec results(eflambe_session:session(), why(), eflambe_options:opts()) ->
          {ok, [binary() | file:filename() | {pos_integer(), binary() | file:filename()}]}
          | {error, term()}.
results(Session, Why, #{keep := Keep} = Opts) ->
    case eflambe_session:finish(Session, true, Opts) of
        {ok, Windows, Info} ->
            case kept(Keep, Windows, Info, Opts) of
                {ok, []} when Why =:= done -> {error, no_calls_captured};
                {ok, []} -> {error, Why};
                Written -> Written
            end;
        {error, _} = Error ->
            Error
    end.

%% {keep, all}: every call's result. {keep, slowest | median}: only that
%% call's, of those that ended, by duration, with its index among all
%% (eflambe:calls/1's); files written for the others (perf.data) removed.
-spec kept(all | slowest | median, [map()], map(), eflambe_options:opts()) ->
          {ok, list()} | {error, term()}.
kept(all, Ordered, Info, Opts) ->
    eflambe_output:write_all([Data || #{data := Data} <- Ordered], Info, Opts);
kept(Which, Ordered, Info, Opts) ->
    Numbered = lists:zip(lists:seq(1, length(Ordered)), Ordered),
    ByDuration = lists:sort([{End - Start, N} || {N, #{ended := E, start_us := Start,
                                                      end_us := End}} <- Numbered,
                                                 E =/= open]),
    case ByDuration of
        [] ->
            discard(Ordered),
            {ok, []};
        _ ->
            {_, Index} = case Which of
                             slowest -> lists:last(ByDuration);
                             median -> lists:nth((length(ByDuration) + 1) div 2, ByDuration)
                         end,
            {Chosen, Others} = lists:partition(fun({N, _}) -> N =:= Index end, Numbered),
            discard([W || {_, W} <- Others]),
            [{_, #{data := Data}}] = Chosen,
            case eflambe_output:write_all([Data], Info, Opts) of
                {ok, [Result]} -> {ok, [{Index, Result}]};
                {error, _} = Error -> Error
            end
    end.

%% Files the folder streamed for calls not kept.
-spec discard([map()]) -> ok.
discard(Windows) ->
    _ = [file:delete(F) || #{data := {file, File}} <- Windows, F <- [File, File ++ ".syms"]],
    ok.
