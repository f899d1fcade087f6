%% @private
%% {node, Node}: a capture or a sample run on another node of the cluster.
%% The run's
%% process there is spawned and monitored from here and itself monitors
%% the caller, so either side going away ends the other's part; the
%% flamegraphs come back as data and are written here, per the caller's
%% own options. The archive is kept on that node with {archive, Path}, and
%% copied back here with {fetch_archive, Path}.
-module(eflambe_remote).

-export([capture/4, sample/2]).
%% Runs on the remote node.
-export([run/5, run_sample/3]).

-spec capture(node(), term(), term(), eflambe_options:opts()) ->
          {ok, list()} | {error, term()}.
capture(Node, MFA, N, Opts) ->
    when_reachable(Node, fun() ->
        with_archive(Node, Opts, fun(O) -> call(Node, MFA, N, O) end)
    end).

%% eflambe:sample on that node: one flamegraph back.
-spec sample(node(), eflambe_options:opts()) -> {ok, binary() | file:filename()} | {error, term()}.
sample(Node, Opts) ->
    when_reachable(Node, fun() -> with_archive(Node, Opts, fun(O) -> sample_there(Node, O) end) end).

-spec sample_there(node(), eflambe_options:opts()) ->
          {ok, binary() | file:filename()} | {error, term()}.
sample_there(Node, Opts) ->
    Ref = make_ref(),
    Remote = remote_options(Opts, [hz, duration, pids]),
    Started = spawn_monitor(Node, ?MODULE, run_sample, [self(), Ref, Remote]),
    case await(Started, Ref, Node, remote_sample_failed) of
        {ok, Data} -> eflambe_output:write(Data, #{extension => eflambe_output:extension(Opts)}, Opts);
        Error -> Error
    end.

%% What the process started over there sends back, or why it died.
-spec await({pid(), reference()}, reference(), node(), atom()) -> {ok, term()} | {error, term()}.
await({Pid, MRef}, Ref, Node, FailTag) ->
    receive
        {Ref, Result} ->
            demonitor(MRef, [flush]),
            Result;
        {'DOWN', MRef, process, Pid, Reason} ->
            {error, {FailTag, Node, Reason}}
    end.

-spec when_reachable(node(), fun(() -> Result)) -> Result | {error, term()}.
when_reachable(Node, Fun) ->
    case net_adm:ping(Node) of
        pang ->
            {error, {nodedown, Node}};
        pong ->
            case remote(Node, code, ensure_loaded, [eflambe_tracer]) of
                {ok, {module, eflambe_tracer}} -> Fun();
                {ok, {error, Why}} -> {error, {not_loaded_on_node, Node, Why}};
                {error, _} = Error -> Error
            end
    end.

%% A call over there; the node going away is an error, not a raise.
-spec remote(node(), module(), atom(), list()) -> {ok, term()} | {error, term()}.
remote(Node, M, F, A) ->
    try
        {ok, erpc:call(Node, M, F, A, 120000)}
    catch
        error:{erpc, Reason} -> {error, {nodedown, Node, Reason}};
        Class:Reason -> {error, {remote_call_failed, Node, {M, F, length(A)}, {Class, Reason}}}
    end.

%% With {fetch_archive, Path} the run over there keeps its archive (at
%% `archive', or at a temporary path there) and it is copied here after.
-spec with_archive(node(), eflambe_options:opts(), fun((eflambe_options:opts()) -> Result)) ->
          Result | {error, term()}.
with_archive(_Node, #{fetch_archive := undefined} = Opts, Run) ->
    Run(Opts);
with_archive(Node, #{fetch_archive := Local, archive := Kept} = Opts, Run) ->
    case Kept of
        undefined ->
            case remote(Node, eflambe_session, temp_archive, []) of
                {ok, There} -> fetched(Node, There, true, Local, Run(Opts#{archive := There}));
                {error, _} = Error -> Error
            end;
        There ->
            fetched(Node, There, false, Local, Run(Opts))
    end.

%% Copies the archive over there to Local (a new file, as archives are),
%% and deletes it there if it was temporary.
-spec fetched(node(), file:filename_all(), boolean(), file:filename_all(), Result) ->
          Result | {error, term()}.
fetched(Node, There, Temporary, Local, Result) ->
    Copied = case remote(Node, file, read_file, [There]) of
                 {ok, {ok, Bin}} ->
                     _ = file:delete(Local),
                     case eflambe_output:create(fun() -> Local end, Bin, 1) of
                         {ok, _} -> ok;
                         {error, _, Why} -> {error, Why}
                     end;
                 {ok, {error, Why}} ->
                     {error, Why};
                 {error, _} = E ->
                     E
             end,
    _ = Temporary andalso remote(Node, file, delete, [There]),
    case {Result, Copied} of
        {{ok, _}, {error, Reason}} -> {error, {fetch_archive, Local, Reason}};
        _ -> Result
    end.

-spec call(node(), term(), term(), eflambe_options:opts()) ->
          {ok, list()} | {error, term()}.
call(Node, MFA, N, Opts) ->
    Ref = make_ref(),
    Remote = remote_options(Opts, []),
    Started = spawn_monitor(Node, ?MODULE, run, [self(), Ref, MFA, N, Remote]),
    case await(Started, Ref, Node, remote_capture_failed) of
        {ok, Results} -> write_here(Results, Opts);
        Error -> Error
    end.

%% The flamegraphs, written here; with {keep, _}, one, with its index.
-spec write_here(list(), eflambe_options:opts()) -> {ok, list()} | {error, term()}.
write_here([{Index, Data}], Opts) when is_integer(Index) ->
    case write_here([Data], Opts) of
        {ok, [Result]} -> {ok, [{Index, Result}]};
        Error -> Error
    end;
write_here(Results, Opts) ->
    eflambe_output:write_all(Results, #{extension => eflambe_output:extension(Opts)}, Opts).

%% The options as the run over there takes them: the flamegraphs come back
%% as data (written here), with the options that mean the same over there.
%% Defaults are left to that node (buffer_size auto: sized by its own
%% calibration; compensate true).
-spec remote_options(eflambe_options:opts(), [atom()]) -> list().
remote_options(Opts, Extra) ->
    Same = [buffer_size, archive, timeout, every, spawned, max_depth, recursion, exclude, max_events,
            max_bytes, follow, compensate, progress | Extra],
    [{return, flamegraph}, {output_format, maps:get(output_format, Opts)}
     | [{K, V} || {K, V} <- maps:to_list(Opts), lists:member(K, Same), V =/= undefined,
                  {K, V} =/= {buffer_size, auto}, {K, V} =/= {compensate, true}]].

%% On the remote node: the capture, watched by the caller's monitor.
-spec run(pid(), reference(), term(), term(), list()) -> ok.
run(Caller, Ref, MFA, N, Options) ->
    watched(Caller, Ref, fun() -> eflambe:capture(MFA, N, Options) end).

-spec run_sample(pid(), reference(), list()) -> ok.
run_sample(Caller, Ref, Options) ->
    watched(Caller, Ref, fun() -> eflambe:sample(Options) end).

-spec watched(pid(), reference(), fun(() -> term())) -> ok.
watched(Caller, Ref, Fun) ->
    CallerRef = monitor(process, Caller),
    Self = self(),
    Worker = spawn_link(fun() -> Self ! {done, Fun()} end),
    receive
        {done, Result} ->
            Caller ! {Ref, Result},
            ok;
        {'DOWN', CallerRef, process, Caller, _} ->
            %% The capture's owner watches Worker, which dies with us.
            unlink(Worker),
            exit(Worker, kill),
            ok
    end.
