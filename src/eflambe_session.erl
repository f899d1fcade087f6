%% @private
%% What every profiling run shares: the NIF session (rings, flusher,
%% archive), the trace patterns that concern the whole node, the guard that
%% disarms the node if the run's owner dies, and folding at the end.
-module(eflambe_session).

-export([owned/2, watched/3, ours/2, start/3, stop/1, finish/3, deliver/4, fold/4, fold_options/1, abort/1, halt/2,
         arm_local/1, disarm_local/0, untrace_all/1, traced/0, processes_where/1, traced_by_others/1, tracing_calls/1, register_running/1, unregister_running/0,
         stop_running/0, recover/1, temp_archive/0, deadline/1, thread_count/0]).

-export_type([session/0]).

-type session() :: #{tracer := integer(), meta := integer(),
                     follow := #{follow_call := integer(), follow_take := integer(),
                                 server := integer(), follow_spawn := integer(),
                                 follow_seq := integer()},
                     archive := file:filename(),
                     keep := boolean(), mode := atom()}.

%% Threads besides the schedulers that may run a tracer callback.
-define(SPARE_THREADS, 8).
%% The name of whatever process answers eflambe:stop() for the running run.
-define(RUNNING, eflambe_running).
%% In an owner's process dictionary (owned/2): whom start/3 tells.
-define(OWNER_OF, eflambe_owner_of).

-include_lib("kernel/include/file.hrl").

%% Runs Fun(Caller) in a process of its own, the run's owner (which
%% eflambe:stop() reaches and which watches Caller), and waits for what it
%% returns; if it dies, {error, {FailTag, Reason}}. The owner takes the
%% run's name before its session starts: a stop() that comes while it
%% starts and arms waits for it, instead of ending a session that is not
%% armed yet.
-spec owned(fun((pid()) -> Result), atom()) -> Result | {error, {atom(), term()}}.
owned(Fun, FailTag) ->
    Caller = self(),
    Ref = make_ref(),
    {Pid, MRef} = spawn_monitor(fun() ->
                                        put(?OWNER_OF, {Caller, Ref}),
                                        Caller ! {Ref, case register_running(self()) of
                                                           ok -> Fun(Caller);
                                                           {error, _} = Taken -> Taken
                                                       end}
                                end),
    owned(Pid, MRef, Ref, FailTag, none).

%% Started: the tracer state of the session the owner started (start/3
%% tells), to end if the owner dies without ending it.
-spec owned(pid(), reference(), reference(), atom(), integer() | none) -> term().
owned(Pid, MRef, Ref, FailTag, Started) ->
    receive
        {Ref, started, TracerState} ->
            owned(Pid, MRef, Ref, FailTag, TracerState);
        {Ref, Result} ->
            demonitor(MRef, [flush]),
            Result;
        {'DOWN', MRef, process, Pid, Reason} ->
            %% Killed, it could not disarm the node.
            _ = is_integer(Started) andalso recover(Started),
            {error, {FailTag, Reason}}
    end.

%% Starts the NIF session. Params are start_session's own (root_pid,
%% root_frame, budget, every, notify); the rest comes from Opts.
-spec start(atom(), map(), eflambe_options:opts()) -> {ok, session()} | {error, term()}.
start(Mode, Params, #{archive := Kept} = Opts) ->
    %% A tracer module that is not loaded makes trace actions fail silently.
    case code:ensure_loaded(eflambe_tracer) of
        {module, eflambe_tracer} when Kept =:= undefined ->
            sweep_stale_archives(),
            start_temporary(Mode, Params, Opts, 3);
        {module, eflambe_tracer} ->
            %% The archive is created anew (O_EXCL): a regular file there,
            %% which the user asked to replace, goes first.
            _ = file:delete(Kept),
            start_session(Mode, Params, Opts, Kept);
        {error, Reason} ->
            {error, {cannot_load_tracer_nif, Reason}}
    end.

%% A temporary archive gets a name no one can know in advance; should one
%% be taken all the same (the archive is created with O_EXCL), another.
-spec start_temporary(atom(), map(), eflambe_options:opts(), non_neg_integer()) ->
          {ok, session()} | {error, term()}.
start_temporary(Mode, Params, Opts, Tries) ->
    case start_session(Mode, Params, Opts, temp_archive()) of
        {error, {cannot_start, io_error, _}} when Tries > 1 ->
            start_temporary(Mode, Params, Opts, Tries - 1);
        Result ->
            Result
    end.

-spec start_session(atom(), map(), eflambe_options:opts(), file:filename()) ->
          {ok, session()} | {error, term()}.
start_session(Mode, Params, #{buffer_size := BufferBytes, archive := Kept} = Opts, Archive) ->
    #{event_bytes := EventBytes} = eflambe_tracer:capabilities(),
    Args = Params#{archive => eflambe_options:native_name(Archive),
                   ring_events => ring_events(Mode, BufferBytes, EventBytes),
                   threads => thread_count(),
                   max_events => maps:get(max_events, Opts),
                   max_bytes => maps:get(max_bytes, Opts),
                   follow => maps:get(follow, Opts, false) =/= false,
                   meta => metadata(Mode, Params, Opts)},
    case eflambe_tracer:start_session(Args) of
        {ok, TracerState, MetaState, FollowStates} ->
            _ = case get(?OWNER_OF) of
                    {Caller, Ref} -> Caller ! {Ref, started, TracerState};
                    undefined -> ok
                end,
            {ok, #{tracer => TracerState, meta => MetaState, follow => FollowStates,
                   archive => Archive,
                   keep => Kept =/= undefined, mode => Mode}};
        {error, already_running} = Error ->
            Error;
        {error, {Reason, _}} ->
            {error, {cannot_start, Reason, Archive}}
    end.

%% A ring holds what a busy scheduler records in about RING_MS at the
%% node's calibrated rate (a ring of a power of two events: 20-40 ms; 8 MiB
%% on the development machine), between 1 and 16 MiB: the flusher, which
%% shares the cores with the schedulers, may be off its core that long.
%% Samples come a tick at a time: 1 MiB.
-define(RING_MS, 20).
-spec ring_events(atom(), auto | pos_integer(), pos_integer()) -> pos_integer().
ring_events(sample, auto, EventBytes) ->
    (1 bsl 20) div EventBytes;
ring_events(_Mode, auto, EventBytes) ->
    #{{call, call} := Ns} = eflambe_calibrate:costs(),
    Events = ?RING_MS * 1000000 div max(1, Ns),
    max((1 bsl 20) div EventBytes, min((16 bsl 20) div EventBytes, Events));
ring_events(_Mode, Bytes, EventBytes) ->
    Bytes div EventBytes.

%% Stops the session once every trace event is delivered, frees the node
%% for the next run, and completes the archive; nothing may be traced for
%% it any more.
-spec stop(session()) -> {ok, map()} | {error, term()}.
stop(#{tracer := TracerState, archive := Archive, mode := Mode}) ->
    delivered(),
    case eflambe_tracer:stop_session(TracerState) of
        {ok, #{modules := Modules, processes := Pids} = Stats} ->
            untrace(Pids, TracerState),
            warn_if_partial(Stats),
            %% Sampled stacks are real stacks already: no code is read for
            %% them, only what their processes are called.
            Names = names(Pids),
            _ = case Mode of
                    sample when Names =:= [] -> ok;
                    sample -> eflambe_call_sites:add(Archive, [], Names);
                    _ -> eflambe_call_sites:add(Archive, Modules, Names)
                end,
            {ok, Stats};
        {error, _} = Error ->
            Error
    end.

%% Waits until every trace event sent so far has reached the tracer.
-spec delivered() -> ok.
delivered() ->
    Ref = erlang:trace_delivered(all),
    receive {trace_delivered, all, Ref} -> ok end.

%% stop/1, then deliver/4.
-spec finish(session(), boolean(), eflambe_options:opts()) ->
          {ok, binary() | {file, file:filename()} | [map()], map()} | {error, term()}.
finish(Session, Split, Opts) ->
    deliver(Session, stop(Session), Split, Opts).

%% Folds the archive of a stopped session (Split: one result per profiled
%% call), deletes it unless it is to be kept.
-spec deliver(session(), {ok, map()} | {error, term()}, boolean(), eflambe_options:opts()) ->
          {ok, binary() | {file, file:filename()} | [map()], map()} | {error, term()}.
deliver(#{archive := Archive} = Session, Stopped, Split, #{output_format := Format} = Opts) ->
    try Stopped of
        {ok, _} -> fold(Archive, Format, Split, Opts);
        {error, _} = Error -> Error
    after
        delete_temporary(Session)
    end.

%% Folds the archive: one flamegraph streamed into its file when a file is
%% what is wanted, else the flamegraphs as binaries (replay's too).
-spec fold(file:filename(), atom(), boolean(), eflambe_options:opts()) ->
          {ok, binary() | {file, file:filename()} | [map()], map()} | {error, term()}.
fold(Archive, Format, false, Opts) ->
    Native = eflambe_options:native_name(Archive),
    Stream = fun(File) ->
                     case eflambe_tracer:fold(Native, Format, false,
                                              (fold_options(Opts))#{output => eflambe_options:native_name(File)}) of
                         {ok, {file, _}, Info} -> {ok, {file, File}, Info};
                         Other -> Other
                     end
             end,
    case eflambe_output:stream(Stream, Opts) of
        none -> eflambe_tracer:fold(Native, Format, false, fold_options(Opts));
        Result -> Result
    end;
fold(Archive, Format, true, Opts) ->
    Native = eflambe_options:native_name(Archive),
    #{file_only := FileOnly} = eflambe_tracer:capabilities(),
    case lists:member(Format, FileOnly) of
        true ->
            %% One file per call, STEM-<n><extension>, streamed.
            Ext = eflambe_output:extension(Opts),
            Stream = fun(File) ->
                             Stem = lists:sublist(File, length(File) - length(Ext)),
                             Output = eflambe_options:native_name(Stem),
                             case eflambe_tracer:fold(Native, Format, true,
                                                      (fold_options(Opts))#{output => Output}) of
                                 {ok, Windows, Info} ->
                                     Named = [W#{data := {file, Stem ++ "-" ++ integer_to_list(N) ++ Ext}}
                                              || #{data := {file, N}} = W <- Windows],
                                     {ok, Named, Info};
                                 Other ->
                                     Other
                             end
                     end,
            eflambe_output:stream(Stream, Opts);
        false ->
            eflambe_tracer:fold(Native, Format, true, fold_options(Opts))
    end.

%% What the folder takes from the options.
-spec fold_options(eflambe_options:opts()) ->
          #{max_depth := 1..1024, recursion := exact | collapse, raw_time := boolean()}.
fold_options(#{max_depth := MaxDepth, recursion := Recursion} = Opts) ->
    #{max_depth => MaxDepth, recursion => Recursion,
      raw_time => not maps:get(compensate, Opts, true)}.

%% Stops recording now, for a reason decided here (timeout, stop); the
%% session stays open until finish/3, and the archive says why it ended.
-spec halt(session(), timeout | stopped) -> ok.
halt(#{tracer := TracerState}, Reason) ->
    _ = eflambe_tracer:halt_session(TracerState, Reason),
    ok.

%% A profile that is not whole says so where the user looks first; the
%% outputs say it too (titles, [dropped N events] frames).
-spec warn_if_partial(map()) -> ok.
warn_if_partial(#{stopped := none, dropped := 0}) ->
    ok;
warn_if_partial(#{stopped := Stopped, dropped := Dropped, events := Events}) ->
    logger:warning("eflambe: partial profile: ~ts~b events recorded, ~b lost to full buffers "
                   "(raise buffer_size, or exclude busy modules)",
                   [case Stopped of
                        none -> "";
                        _ -> io_lib:format("recording stopped at ~p; ", [Stopped])
                    end, Events, Dropped]).

%% Ends a session whose results nobody wants (a kept archive stays).
-spec abort(session()) -> ok.
abort(#{tracer := TracerState} = Session) ->
    _ = eflambe_tracer:stop_session(TracerState),
    delete_temporary(Session).

%% Ends a run whose owner died without ending it (killed, say), if the
%% node still has it (TracerState; any: whichever it has): no trace
%% pattern, meta pattern or process flag of it stays, and the node is free
%% for the next run. Its temporary archive stays behind (its name is the
%% owner's), for the sweep of dead nodes' archives, or a later start.
-dialyzer({no_match, recover/1}).
-spec recover(integer() | any) -> {ok, map()} | {error, term()}.
recover(Which) ->
    case code:is_loaded(eflambe_tracer) =/= false andalso eflambe_tracer:running_session() of
        TracerState when is_integer(TracerState), Which =:= any orelse Which =:= TracerState ->
            _ = eflambe_tracer:halt_session(TracerState, stopped),
            disarm_local(),
            %% The meta patterns of the run: on the function it captured or
            %% the window of apply, and a followed run's. Found by asking
            %% every loaded function. ([]: one whose tracer answered
            %% `remove', ours or no one's.)
            _ = [erlang:trace_pattern(MFA, false, [meta])
                 || {M, _} <- code:all_loaded(), {F, A} <- functions(M),
                    MFA <- [{M, F, A}],
                    case erlang:trace_info(MFA, meta) of
                        {meta, {eflambe_tracer, _}} -> true;
                        {meta, []} -> true;
                        _ -> false
                    end],
            eflambe_follow:disarm(),
            untrace_all(#{tracer => TracerState}),
            delivered(),
            eflambe_tracer:stop_session(TracerState);
        _ ->
            {error, not_running}
    end.

-spec functions(module()) -> [{atom(), arity()}].
functions(M) ->
    try M:module_info(functions)
    catch error:_ -> []
    end.

-spec delete_temporary(session()) -> ok.
delete_temporary(#{keep := true}) ->
    ok;
delete_temporary(#{archive := Archive}) ->
    _ = file:delete(Archive),
    ok.

%% Every function of every module, loaded now or later, gets a local call
%% trace pattern: the events of traced processes' inner calls. Excluded
%% modules and functions get none: their calls are not recorded, and their
%% time goes to their callers.
-spec arm_local(eflambe_options:opts()) -> ok.
arm_local(Opts) ->
    _ = erlang:trace_pattern({'_', '_', '_'}, true, [local]),
    _ = erlang:trace_pattern(on_load, true, [local]),
    _ = [erlang:trace_pattern(case X of
                                  {_, _, _} -> X;
                                  M -> {M, '_', '_'}
                              end, false, [local])
         || X <- maps:get(exclude, Opts, [])],
    ok.

-spec disarm_local() -> ok.
disarm_local() ->
    _ = erlang:trace_pattern(on_load, false, [local]),
    _ = erlang:trace_pattern({'_', '_', '_'}, false, [local]),
    ok.

%% Clears the trace flags of every process that still has this session's
%% tracer (a capture in progress at a timeout, a spawned child). (OTP 25's
%% spec of erlang:trace_info/2 leaves out tracer modules: {tracer, {Module,
%% State}}, which it does return.)
-spec untrace_all(#{tracer := integer(), _ => _}) -> ok.
untrace_all(#{tracer := TracerState}) ->
    _ = [catch erlang:trace(P, false, [all])
         || {P, T} <- traced(), ours({tracer, T}, TracerState)],
    ok.

%% What the processes a run recorded are called, those still alive: a
%% registered name, or the function a proc_lib process (a gen_server...)
%% was started with; by their pid's text, as the archive names them.
-spec names([pid()]) -> [{binary(), binary()}].
names(Pids) ->
    [{list_to_binary(pid_to_list(P)), Name} || P <- Pids, Name <- [name(P)], Name =/= <<>>].

-spec name(pid()) -> binary().
name(P) ->
    case erlang:process_info(P, registered_name) of
        {registered_name, Name} ->
            atom_to_binary(Name);
        _ ->
            case erlang:process_info(P, dictionary) of
                {dictionary, Dict} ->
                    case lists:keyfind('$initial_call', 1, Dict) of
                        {_, {M, F, A}} when is_atom(M), is_atom(F), is_integer(A) ->
                            iolist_to_binary(io_lib:format("~ts:~ts/~b", [M, F, A]));
                        _ -> <<>>
                    end;
                undefined ->
                    <<>>
            end
    end.

%% Clears the trace flags of the processes a stopped session's events came
%% from or named (spawned, followed), where they are still its own: a look
%% at the few the run touched, not at every process. A process the run
%% flagged that made no event (spawned as it ended) loses its flags at its
%% first: the tracer answers `remove' once its session is over.
-spec untrace([pid()], integer()) -> ok.
untrace(Pids, TracerState) ->
    _ = [catch erlang:trace(P, false, [all])
         || P <- Pids, ours(erlang:trace_info(P, tracer), TracerState)],
    ok.

%% The processes traced now, with their tracers. process_info's trace
%% flags (0: untraced, whatever their bits mean in this OTP) are a cheap
%% first look, 0.3 us a process; trace_info, six times dearer, is asked of
%% the traced few only.
-dialyzer({no_match, traced/0}).
-spec traced() -> [{pid(), term()}].
traced() ->
    [{P, T} || P <- flagged(), {tracer, T} <- [erlang:trace_info(P, tracer)], T =/= []].

-spec flagged() -> [pid()].
flagged() ->
    processes_where(fun(P) ->
                            case erlang:process_info(P, trace) of
                                {trace, Flags} -> Flags =/= 0;
                                undefined -> false
                            end
                    end).

%% The processes for which Pred holds. Large process tables are looked at
%% in slices, one process per online scheduler: 100,000 processes take
%% 19 ms in one, 13.5 in two on 2 cores.
-spec processes_where(fun((pid()) -> boolean())) -> [pid()].
processes_where(Pred) ->
    All = processes(),
    Slices = erlang:system_info(schedulers_online),
    case length(All) of
        N when N < 20000; Slices < 2 ->
            lists:filter(Pred, All);
        N ->
            Self = self(),
            Scanners = [spawn_link(fun() -> Self ! {scanned, self(), lists:filter(Pred, Slice)} end)
                        || Slice <- slices(All, N, (N + Slices - 1) div Slices)],
            lists:append([receive {scanned, S, Found} -> Found end || S <- Scanners])
    end.

%% L (of length N) in slices of Size.
-spec slices([pid()], non_neg_integer(), pos_integer()) -> [[pid()]].
slices(L, N, Size) when N =< Size ->
    [L];
slices(L, N, Size) ->
    {Slice, Rest} = lists:split(Size, L),
    [Slice | slices(Rest, N - Size, Size)].

%% Of the traced processes (traced/0), those another tracer traces.
-spec traced_by_others([{pid(), term()}]) -> [pid()].
traced_by_others(Traced) ->
    [P || {P, T} <- Traced, not is_tuple(T) orelse element(1, T) =/= eflambe_tracer].

%% Of those, the ones traced with `call': the local call patterns of a run
%% would serve that tracer too (a flood of messages), and their removal
%% would end its own patterns.
-spec tracing_calls([pid()]) -> [pid()].
tracing_calls(Others) ->
    [P || P <- Others, {flags, Flags} <- [erlang:trace_info(P, flags)], lists:member(call, Flags)].

%% Is a process's tracer (trace_info's answer) this run's? A followed
%% server has a tracer state of its own, of the same session
%% (eflambe_tracer:session_of/1).
-spec ours(term(), integer()) -> boolean().
ours({tracer, {eflambe_tracer, State}}, TracerState) when is_integer(State) ->
    eflambe_tracer:session_of(State) =:= eflambe_tracer:session_of(TracerState);
ours(_, _) ->
    false.

%% An owner's run, once its session started: watching Caller.
%% Record({Caller, CallerRef}) records until it says why it stopped
%% (caller_down when its receive saw the caller's 'DOWN'); then the run is
%% aborted, or {ok, Why}. Once recording stopped, eflambe:stop() is the
%% next run's.
-spec watched(pid(), session(), fun(({pid(), reference()}) -> Why)) ->
          {ok, Why} | {error, caller_down}.
watched(Caller, Session, Record) ->
    CallerRef = monitor(process, Caller),
    Result = Record({Caller, CallerRef}),
    unregister_running(),
    case Result of
        caller_down ->
            abort(Session),
            {error, caller_down};
        Why ->
            {ok, Why}
    end.

%% The name eflambe:stop() reaches a run by, taken by the process that
%% answers it before the run's session starts: none while another run has
%% it.
-spec register_running(pid()) -> ok | {error, already_running}.
register_running(Pid) ->
    try register(?RUNNING, Pid) of
        true -> ok
    catch
        error:badarg -> {error, already_running}
    end.

-spec unregister_running() -> ok.
unregister_running() ->
    _ = whereis(?RUNNING) =:= self() andalso unregister(?RUNNING),
    ok.

-spec stop_running() -> ok | {error, not_running}.
stop_running() ->
    case whereis(?RUNNING) of
        undefined ->
            %% No owner answers, yet the node may be armed (an owner that
            %% was killed): then the run is ended here.
            case recover(any) of
                {ok, _} -> ok;
                {error, _} -> {error, not_running}
            end;
        Pid ->
            Ref = monitor(process, Pid),
            Pid ! {eflambe_stop, self(), Ref},
            receive
                {Ref, stopped} -> demonitor(Ref, [flush]), ok;
                {'DOWN', Ref, process, Pid, _} -> ok
            end
    end.

%% When a timeout from now ends, on the monotonic clock in milliseconds.
-spec deadline(timeout()) -> integer() | infinity.
deadline(infinity) -> infinity;
deadline(Ms) -> erlang:monotonic_time(millisecond) + Ms.

%% Threads that may run a tracer callback: a ring each.
-spec thread_count() -> pos_integer().
thread_count() ->
    erlang:system_info(schedulers) + erlang:system_info(dirty_cpu_schedulers)
        + erlang:system_info(dirty_io_schedulers) + ?SPARE_THREADS.

%% eflambe-<os pid>-<64 random bits>.eftrace in TMPDIR: created with
%% O_EXCL|O_NOFOLLOW, mode 0600, so a name someone planted is never used.
-spec temp_archive() -> file:filename().
temp_archive() ->
    <<Random:64>> = crypto:strong_rand_bytes(8),
    filename:join(temp_dir(), lists:flatten(io_lib:format("eflambe-~s-~16.16.0b.eftrace",
                                                          [os:getpid(), Random]))).

-spec temp_dir() -> file:filename().
temp_dir() ->
    case os:getenv("TMPDIR") of
        false -> "/tmp";
        "" -> "/tmp";
        D -> D
    end.

%% A node killed with -9 leaves its temporary archive behind. Deleted here:
%% those of this user whose node's OS process is gone and that were not
%% written for an hour (a node in another PID namespace, sharing the
%% directory, would not show in /proc). Where /proc does not tell which
%% processes live, nothing is deleted. Done at a node's first run and at
%% most once a minute after (a listing of the directory: half a millisecond
%% with 500 files, at every run before).
-define(STALE_S, 3600).
-define(SWEEP_EVERY_S, 60).
-spec sweep_stale_archives() -> ok.
sweep_stale_archives() ->
    Now = erlang:monotonic_time(second),
    case persistent_term:get(eflambe_last_sweep, undefined) of
        Last when is_integer(Last), Now - Last < ?SWEEP_EVERY_S ->
            ok;
        _ ->
            persistent_term:put(eflambe_last_sweep, Now),
            sweep()
    end.

-spec sweep() -> ok.
sweep() ->
    case file:read_file_info("/proc/self", [{time, posix}]) of
        {ok, #file_info{uid = Me}} ->
            Old = erlang:system_time(second) - ?STALE_S,
            Mine = os:getpid(),
            Dir = temp_dir(),
            _ = [file:delete(Path)
                 || Name <- filelib:wildcard("eflambe-*-*.eftrace", Dir),
                    [_, Pid | _] <- [string:split(Name, "-", all)],
                    Pid =/= Mine, Pid =/= "", lists:all(fun(C) -> C >= $0 andalso C =< $9 end, Pid),
                    not filelib:is_dir("/proc/" ++ Pid),
                    Path <- [filename:join(Dir, Name)],
                    {ok, #file_info{type = regular, uid = Uid, mtime = MTime}}
                        <- [file:read_link_info(Path, [{time, posix}])],
                    Uid =:= Me, MTime < Old],
            ok;
        {error, _} ->
            ok
    end.

%% "key=value" lines kept in the archive header.
-spec metadata(atom(), map(), eflambe_options:opts()) -> iodata().
metadata(Mode, Params, Opts) ->
    Target = case maps:get(target, Params) of
                 {M, F, A} -> io_lib:format("~p:~p/~p", [M, F, A]);
                 {Node, Hz} -> io_lib:format("~s at ~b Hz", [Node, Hz])
             end,
    Lines = [{node, node()},
             {otp_release, erlang:system_info(otp_release)},
             {erts_version, erlang:system_info(version)},
             {start_time, calendar:system_time_to_rfc3339(erlang:system_time(second))},
             {mode, Mode},
             {target, Target},
             {output_format, maps:get(output_format, Opts)}]
        ++ [{follow, true} || maps:get(follow, Opts, false) =/= false]
        %% What each trace event cost the traced process, for the folder
        %% to take out (sampling traces no calls).
        ++ case Mode of
               sample -> [];
               _ -> [{cost_key(K), V} || {K, V} <- lists:sort(maps:to_list(eflambe_calibrate:costs()))]
           end,
    [[key_text(K), $=, value_text(V), $\n] || {K, V} <- Lines].

%% cost_call_ns, cost_call_return_to_ns... (c_src/efl_cost.h reads them).
-spec cost_key(atom() | {atom(), atom()}) -> string().
cost_key({A, B}) -> "cost_" ++ atom_to_list(A) ++ "_" ++ atom_to_list(B) ++ "_ns";
cost_key(K) -> "cost_" ++ atom_to_list(K) ++ "_ns".

-spec key_text(atom() | string()) -> string().
key_text(K) when is_atom(K) -> atom_to_list(K);
key_text(K) -> K.

-spec value_text(term()) -> iodata().
value_text(V) when is_atom(V) -> atom_to_list(V);
value_text(V) when is_integer(V) -> integer_to_list(V);
value_text(V) -> V.
