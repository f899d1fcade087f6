%% @private
%% Parses and checks the options of eflambe's API before anything is armed,
%% so every mistake a user can make ends in {error, Reason}.
-module(eflambe_options).

-export([parse/2, output_formats/0, proper_list/1, file_name/1, native_name/1]).

-export_type([opts/0]).

-include_lib("kernel/include/file.hrl").

-type opts() :: #{output_format := eflambe:output_format(),
                  hz => 1..1000,
                  duration => pos_integer(),
                  pids => all | [pid()],
                  output_directory := file:filename() | undefined,
                  return := eflambe:return_kind(),
                  buffer_size => auto | pos_integer(),
                  archive => file:filename_all() | undefined,
                  fetch_archive => file:filename() | undefined,
                  open => undefined | file:filename(),
                  max_depth := 1..1024,
                  recursion := exact | collapse,
                  compensate := boolean(),
                  normalize => boolean(),
                  max_events => pos_integer(),
                  max_bytes => pos_integer(),
                  exclude => [module() | {module(), atom(), arity() | '_'}],
                  timeout => timeout(),
                  follow => eflambe_follow:follow(),
                  every => pos_integer(),
                  spawned => boolean(),
                  arm => eager | lazy,
                  keep => all | slowest | median,
                  node => node(),
                  nodes => [node()] | connected | undefined,
                  %% where a capture over several nodes is told of each
                  %% call captured (eflambe_cluster)
                  progress => pid() | undefined,
                  %% not an option: the processes other tracers trace, as
                  %% apply found them (eflambe_follow:arm/4)
                  traced_by_others => [pid()]}.

%% {nodes, [Node]}: at most this many.
-define(MAX_NODES, 1024).

%% A run stops recording beyond these (see eflambe's option() type).
-define(DEFAULT_MAX_EVENTS, 100000000).
-define(DEFAULT_MAX_BYTES, 1073741824).
%% What the NIF takes: 64-bit limits, 32-bit `every'.
-define(MAX_U64, 16#FFFFFFFFFFFFFFFF).
-define(MAX_U32, 16#FFFFFFFF).

-spec output_formats() -> [eflambe:output_format()].
output_formats() ->
    #{formats := Formats} = eflambe_tracer:capabilities(),
    [Format || {Format, _Extension} <- Formats].

%% Each mode's options, with their defaults.
-spec defaults(mode()) -> opts().
defaults(apply) ->
    #{output_format => brendan_gregg,
      output_directory => undefined,
      return => value,
      buffer_size => auto,
      archive => undefined,
      open => undefined,
      max_depth => 1024,
      recursion => exact,
      compensate => true,
      exclude => [],
      max_events => ?DEFAULT_MAX_EVENTS,
      max_bytes => ?DEFAULT_MAX_BYTES,
      timeout => infinity,
      follow => false};
defaults(capture) ->
    (defaults(apply))#{return => filename,
                       every => 1,
                       spawned => false,
                       arm => eager,
                       keep => all,
                       node => node(),
                       nodes => undefined,
                       progress => undefined,
                       fetch_archive => undefined};
defaults(sample) ->
    (maps:without([exclude, timeout, follow], defaults(apply)))#{return => filename,
                                                        hz => 97,
                                                        duration => 10000,
                                                        pids => all,
                                                        node => node(),
                                                        nodes => undefined,
                                                        fetch_archive => undefined};
defaults(diff) ->
    (defaults(replay))#{normalize => false};
defaults(replay) ->
    #{output_format => brendan_gregg,
      output_directory => undefined,
      return => filename,
      open => undefined,
      max_depth => 1024,
      recursion => exact,
      compensate => true}.

-type mode() :: apply | capture | sample | replay | diff.

%% Options come as a proplist (Erlang) or keyword list (Elixir).
-spec parse(mode(), term()) -> {ok, opts()} | {error, term()}.
parse(Mode, Options) ->
    case proper_list(Options) of
        true -> parse(Mode, Options, defaults(Mode));
        false -> {error, {bad_options, Options}}
    end.

-spec proper_list(term()) -> boolean().
proper_list(L) when is_list(L) ->
    try length(L) >= 0
    catch error:badarg -> false
    end;
proper_list(_) ->
    false.

-spec parse(mode(), list(), opts()) -> {ok, opts()} | {error, term()}.
parse(_Mode, [], Opts) ->
    case {file_only(Opts), cluster(Opts)} of
        {ok, ok} -> default_directory(Opts);
        {{error, _} = Error, _} -> Error;
        {_, {error, _} = Error} -> Error
    end;
parse(Mode, [{Key, Value} = Option | Rest], Opts) when is_atom(Key) ->
    case maps:is_key(Key, Opts) of
        false ->
            {error, {unknown_option, Option}};
        true ->
            case check(Mode, Key, Value) of
                {ok, Checked} -> parse(Mode, Rest, Opts#{Key := Checked});
                {error, _} = Error -> Error
            end
    end;
parse(_Mode, [Option | _], _Opts) ->
    {error, {unknown_option, Option}}.

%% perf.data is written to a file only (it names the file of symbols
%% beside it), here (a capture's, one per call): hotspot reads nothing
%% else.
-spec file_only(opts()) -> ok | {error, term()}.
file_only(#{output_format := Format} = Opts) ->
    #{file_only := FileOnly} = eflambe_tracer:capabilities(),
    Remote = maps:get(node, Opts, node()) =/= node(),
    Hotspot = is_list(maps:get(open, Opts, undefined)) andalso
        filename:basename(maps:get(open, Opts)) =:= "hotspot",
    case lists:member(Format, FileOnly) of
        false when Hotspot ->
            {error, {open, hotspot, "hotspot reads perf.data files: use {output_format, perf_data}"}};
        false ->
            ok;
        true when Remote ->
            {error, {output_format, Format, "written on this node only: use {fetch_archive, Path}, "
                                            "then replay it here"}};
        true when map_get(return, Opts) =:= flamegraph ->
            {error, {output_format, Format, "written to a file only: use {return, filename}"}};
        true ->
            ok
    end.

%% {nodes, _} runs on each of them and merges their profiles here: not
%% with {node, _}, nor with what one node's profile alone means.
-spec cluster(opts()) -> ok | {error, term()}.
cluster(#{nodes := undefined}) ->
    ok;
cluster(#{node := Node}) when Node =/= node() ->
    {error, {conflicting_options, node, nodes}};
cluster(#{fetch_archive := Path}) when Path =/= undefined ->
    {error, {conflicting_options, fetch_archive, nodes}};
cluster(#{keep := Keep}) when Keep =/= all ->
    {error, {conflicting_options, keep, nodes}};
cluster(_) ->
    ok.

%% A file is written to the current directory unless another is named:
%% checked now, like one named, not after the run.
-spec default_directory(opts()) -> {ok, opts()} | {error, term()}.
default_directory(#{output_directory := undefined, return := Return} = Opts)
  when Return =/= flamegraph; map_get(open, Opts) =/= undefined ->
    {ok, Cwd} = file:get_cwd(),
    case writable(Cwd) of
        {ok, _} -> {ok, Opts#{output_directory := Cwd}};
        {error, _} = Error -> Error
    end;
default_directory(Opts) ->
    {ok, Opts}.

-spec check(mode(), atom(), term()) -> {ok, term()} | {error, term()}.
check(diff, output_format, Format) ->
    #{diff := Diffable} = eflambe_tracer:capabilities(),
    case lists:member(Format, Diffable) of
        true -> {ok, Format};
        false -> {error, {bad_output_format, Format, {expected_one_of, Diffable}}}
    end;
check(diff, normalize, B) when is_boolean(B) ->
    {ok, B};
check(diff, normalize, B) ->
    {error, {bad_normalize, B, {expected, boolean}}};
check(_, output_format, Format) ->
    case lists:member(Format, output_formats()) of
        true -> {ok, Format};
        false -> {error, {bad_output_format, Format, {expected_one_of, output_formats()}}}
    end;
check(_, output_directory, Dir) ->
    check_directory(Dir);
check(Mode, return, Kind) ->
    Kinds = case Mode of
                apply -> [value, flamegraph, filename];
                _ -> [flamegraph, filename]
            end,
    case lists:member(Kind, Kinds) of
        true -> {ok, Kind};
        false -> {error, {bad_return, Kind, {expected_one_of, Kinds}}}
    end;
check(_, buffer_size, auto) ->
    {ok, auto};
check(_, buffer_size, Bytes) ->
    %% Rings of 64 events at least, and 1 GiB at most.
    #{event_bytes := EventBytes} = eflambe_tracer:capabilities(),
    case is_integer(Bytes) andalso Bytes >= 64 * EventBytes andalso Bytes =< 1 bsl 30 of
        true -> {ok, Bytes};
        false -> {error, {bad_buffer_size, Bytes, {expected_bytes_between, 64 * EventBytes, 1 bsl 30}}}
    end;
check(_, archive, Path) ->
    check_archive_path(Path);
check(_, fetch_archive, Path) ->
    check_archive_path(Path);
check(_, open, Program) ->
    check_program(Program);
check(_, max_depth, D) when is_integer(D), D >= 1, D =< 1024 ->
    {ok, D};
check(_, max_depth, D) ->
    {error, {bad_max_depth, D, {expected_between, 1, 1024}}};
check(_, recursion, R) when R =:= exact; R =:= collapse ->
    {ok, R};
check(_, recursion, R) ->
    {error, {bad_recursion, R, {expected_one_of, [exact, collapse]}}};
check(_, compensate, B) when is_boolean(B) ->
    {ok, B};
check(_, compensate, B) ->
    {error, {bad_compensate, B, {expected_one_of, [true, false]}}};
check(_, exclude, List) ->
    case proper_list(List) andalso [X || X <- List, not excludable(X)] of
        false -> {error, {bad_exclude, List, {expected, list}}};
        [] -> {ok, List};
        [Bad | _] -> {error, {bad_exclude, Bad, {expected, 'Module | {Module, Function, Arity}'}}}
    end;
check(_, timeout, infinity) ->
    {ok, infinity};
check(_, timeout, Ms) when is_integer(Ms), Ms >= 0 ->
    {ok, Ms};
check(_, timeout, Ms) ->
    {error, {bad_timeout, Ms, {expected, 'infinity | milliseconds'}}};
check(_, Limit, N) when (Limit =:= max_events orelse Limit =:= max_bytes), is_integer(N), N >= 1,
                         N =< ?MAX_U64 ->
    {ok, N};
check(_, max_events, N) ->
    {error, {bad_max_events, N, {expected_between, 1, ?MAX_U64}}};
check(_, max_bytes, N) ->
    {error, {bad_max_bytes, N, {expected_between, 1, ?MAX_U64}}};
check(Mode, follow, Follow) when Mode =:= apply; Mode =:= capture ->
    eflambe_follow:check(Follow);
check(_, node, Node) when is_atom(Node) ->
    {ok, Node};
check(_, node, Node) ->
    {error, {bad_node, Node}};
check(_, nodes, connected) ->
    {ok, connected};
check(_, nodes, Nodes) ->
    case proper_list(Nodes) andalso Nodes =/= [] andalso lists:all(fun erlang:is_atom/1, Nodes)
        andalso length(Nodes) =< ?MAX_NODES of
        true -> {ok, Nodes};
        false -> {error, {bad_nodes, Nodes, {expected, 'connected | [node()]'}}}
    end;
check(capture, progress, P) when is_pid(P) ->
    {ok, P};
check(capture, progress, P) ->
    {error, {bad_progress, P, {expected, pid}}};
check(sample, hz, Hz) when is_integer(Hz), Hz >= 1, Hz =< 1000 ->
    {ok, Hz};
check(sample, hz, Hz) ->
    {error, {bad_hz, Hz, {expected_between, 1, 1000}}};
check(sample, duration, Ms) when is_integer(Ms), Ms >= 1 ->
    {ok, Ms};
check(sample, duration, Ms) ->
    {error, {bad_duration, Ms, {expected, milliseconds}}};
check(sample, pids, all) ->
    {ok, all};
%% Pids of the node sampled (which {node, Node} may make another one).
check(sample, pids, Pids) ->
    case proper_list(Pids) andalso lists:all(fun erlang:is_pid/1, Pids) of
        true -> {ok, Pids};
        false -> {error, {bad_pids, Pids, {expected, 'all | [pid()]'}}}
    end;
check(capture, spawned, B) when is_boolean(B) ->
    {ok, B};
check(capture, spawned, B) ->
    {error, {bad_spawned, B, {expected, boolean}}};
check(capture, every, K) when is_integer(K), K >= 1, K =< ?MAX_U32 ->
    {ok, K};
check(capture, every, K) ->
    {error, {bad_every, K, {expected_between, 1, ?MAX_U32}}};
check(capture, arm, Arm) when Arm =:= eager; Arm =:= lazy ->
    {ok, Arm};
check(capture, arm, Arm) ->
    {error, {bad_arm, Arm, {expected, 'eager | lazy'}}};
check(capture, keep, Keep) when Keep =:= all; Keep =:= slowest; Keep =:= median ->
    {ok, Keep};
check(capture, keep, Keep) ->
    {error, {bad_keep, Keep, {expected, 'all | slowest | median'}}}.

-spec excludable(term()) -> boolean().
excludable(M) when is_atom(M) -> true;
excludable({M, F, A}) when is_atom(M), is_atom(F), A =:= '_' -> true;
excludable({M, F, A}) when is_atom(M), is_atom(F), is_integer(A), A >= 0, A =< 255 -> true;
excludable(_) -> false.

-spec check_directory(term()) -> {ok, file:filename()} | {error, term()}.
check_directory(Dir) ->
    case file_name(Dir) of
        error ->
            {error, {bad_output_directory, Dir}};
        {ok, Name} ->
            case file:read_file_info(Name) of
                {ok, #file_info{type = directory}} ->
                    writable(Name);
                {ok, _} ->
                    {error, {output_directory, Name, "not a directory"}};
                {error, Reason} ->
                    {error, {output_directory, Name, file:format_error(Reason)}}
            end
    end.

%% The program to open the output with: speedscope (its npm command), or any
%% program by name or path, run without a shell with the file as its only
%% argument. hotspot reads perf.data files only (file_only/2 checks that
%% the output is one).
-spec check_program(term()) -> {ok, file:filename()} | {error, term()}.
check_program(speedscope) ->
    find_program("speedscope");
check_program(Program) when is_atom(Program) ->
    find_program(atom_to_list(Program));
check_program(Program) when is_binary(Program) ->
    case unicode:characters_to_list(Program) of
        Name when is_list(Name) -> check_program(Name);
        _ -> {error, {bad_open, Program}}
    end;
check_program(Program) ->
    case file_name(Program) of
        {ok, Name} -> find_program(Name);
        error -> {error, {bad_open, Program}}
    end.

-spec find_program(string()) -> {ok, file:filename()} | {error, term()}.
find_program(Name) ->
    Bare = filename:pathtype(Name) =:= relative andalso length(filename:split(Name)) =:= 1,
    case Bare of
        true ->
            case os:find_executable(Name) of
                false -> {error, {open, Name, "not installed (not found in PATH)"}};
                Path -> {ok, Path}
            end;
        false ->
            case file:read_file_info(Name) of
                {ok, #file_info{type = regular, mode = Mode}} when Mode band 8#111 =/= 0 ->
                    {ok, Name};
                {ok, _} ->
                    {error, {open, Name, "not an executable file"}};
                {error, Reason} ->
                    {error, {open, Name, file:format_error(Reason)}}
            end
    end.

%% Where the archive is to be kept: a file name in a writable directory.
-spec check_archive_path(term()) -> {ok, file:filename()} | {error, term()}.
check_archive_path(Path) ->
    case file_name(Path) of
        error ->
            {error, {bad_archive, Path}};
        {ok, Name} ->
            %% A regular file is replaced; anything else (a link, a FIFO, a
            %% directory) is refused: the archive is never written through it.
            case file:read_link_info(Name) of
                {ok, #file_info{type = directory}} ->
                    {error, {archive, Name, "is a directory"}};
                {ok, #file_info{type = Type}} when Type =/= regular ->
                    {error, {archive, Name, "not a regular file"}};
                _ ->
                    case check_directory(filename:dirname(filename:absname(Name))) of
                        {ok, _} -> {ok, Name};
                        {error, {output_directory, Dir, Why}} -> {error, {archive, Dir, Why}}
                    end
            end
    end.

%% Mode bits lie for root and on some mounts: try it, with a new file
%% under a name no one can plant first (O_EXCL, 64 random bits).
-spec writable(file:filename_all()) -> {ok, file:filename_all()} | {error, term()}.
writable(Dir) ->
    <<Random:64>> = crypto:strong_rand_bytes(8),
    Probe = filename:join(Dir, io_lib:format(".eflambe-write-check-~16.16.0b", [Random])),
    case file:open(Probe, [write, exclusive, raw]) of
        {ok, Fd} ->
            ok = file:close(Fd),
            _ = file:delete(Probe),
            {ok, Dir};
        {error, Reason} ->
            {error, {output_directory, Dir, file:format_error(Reason)}}
    end.

%% A file name the VM can pass to the file system, as the user gave it:
%% characters that the file name encoding can carry, or a binary of raw
%% bytes; not empty, no NUL (C cannot carry it).
-spec file_name(term()) -> {ok, file:filename_all()} | error.
file_name(Name) when is_binary(Name) ->
    case Name =/= <<>> andalso binary:match(Name, <<0>>) of
        nomatch -> {ok, Name};
        _ -> error
    end;
file_name(Name) ->
    case io_lib:char_list(Name) andalso
         unicode:characters_to_binary(Name, unicode, file:native_name_encoding()) of
        Native when is_binary(Native), Native =/= <<>> ->
            case binary:match(Native, <<0>>) of
                nomatch -> {ok, Name};
                _ -> error
            end;
        _ ->
            error
    end.

%% The bytes the file system sees for a name that file_name/1 accepted, as
%% the VM encodes them (what the NIF opens).
-spec native_name(file:filename_all()) -> binary().
native_name(Name) when is_binary(Name) ->
    Name;
native_name(Name) ->
    <<_/binary>> = unicode:characters_to_binary(Name, unicode, file:native_name_encoding()).
