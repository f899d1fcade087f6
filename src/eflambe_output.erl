%% @private
%% Delivers folded flamegraphs: written to files, returned, or both.
-module(eflambe_output).

-export([write/3, write_calls/3, write_all/3, stream/2, made/2, extension/1, create/3]).

%% A new name is tried when the one made is taken (by another node).
-define(NAME_TRIES, 5).

%% When the result is a file and no binary of it is wanted, the folder
%% streams the flamegraph into a new file in the output directory:
%% Fold(File) creates it, {error, {output, eexist}} if the name is taken.
%% Else none.
-spec stream(fun((file:filename()) -> {ok, term(), map()} | {error, term()}),
             eflambe_options:opts()) -> {ok, term(), map()} | {error, term()} | none.
stream(_Fold, #{return := flamegraph}) ->
    none;
stream(Fold, Opts) ->
    stream(Fold, Opts, ?NAME_TRIES).

-spec stream(fun((file:filename()) -> {ok, term(), map()} | {error, term()}),
             eflambe_options:opts(), pos_integer()) -> {ok, term(), map()} | {error, term()}.
stream(Fold, #{output_directory := Dir} = Opts, Tries) ->
    File = filename:join(directory(Dir), file_name(extension(Opts))),
    case Fold(File) of
        {error, {output, eexist}} when Tries > 1 ->
            stream(Fold, Opts, Tries - 1);
        {error, {output, Posix}} ->
            {error, {write_output, File, file:format_error(Posix)}};
        Result ->
            Result
    end.

%% A flamegraph made by Make(#{output => File}) streaming into a new file
%% when a file is what is wanted, else by Make(#{}) as a binary; then
%% delivered as any run's (written, returned, opened).
-spec made(fun((map()) -> {ok, term(), map()} | {error, term()}), eflambe_options:opts()) ->
          {ok, binary() | file:filename()} | {error, term()}.
made(Make, Opts) ->
    Stream = fun(File) ->
                     case Make(#{output => eflambe_options:native_name(File)}) of
                         {ok, {file, _}, Info} -> {ok, {file, File}, Info};
                         Other -> Other
                     end
             end,
    Made = case stream(Stream, Opts) of
               none -> Make(#{});
               Streamed -> Streamed
           end,
    case Made of
        {ok, Data, Info} -> write(Data, Info, Opts);
        {error, _} = Error -> Error
    end.

%% The usual file name extension of each output format.
-spec extension(eflambe_options:opts()) -> string().
extension(#{output_format := Format}) ->
    #{formats := Formats} = eflambe_tracer:capabilities(),
    {Format, Extension} = lists:keyfind(Format, 1, Formats),
    Extension.

%% {return, flamegraph} writes no file unless a directory was asked for,
%% or a program is to open it. A flamegraph the folder streamed into its
%% file ({file, File}) is only reported.
-spec write(binary() | {file, file:filename()}, #{extension := string(), _ => _},
            eflambe_options:opts()) ->
          {ok, binary() | file:filename()} | {error, term()}.
write({file, File}, _Info, Opts) ->
    open(File, maps:get(open, Opts, undefined)),
    {ok, File};
write(Data, Info, #{return := flamegraph, output_directory := undefined} = Opts) ->
    case maps:get(open, Opts, undefined) of
        undefined -> {ok, Data};
        _ -> write_file(Data, Info, Opts)
    end;
write(Data, Info, Opts) ->
    write_file(Data, Info, Opts).

-spec write_file(binary(), #{extension := string(), _ => _}, eflambe_options:opts()) ->
          {ok, binary() | file:filename()} | {error, term()}.
write_file(Data, #{extension := Ext}, #{return := Return, output_directory := Dir} = Opts) ->
    case create(fun() -> filename:join(directory(Dir), file_name(Ext)) end, Data, ?NAME_TRIES) of
        {ok, File} ->
            open(File, maps:get(open, Opts, undefined)),
            case Return of
                flamegraph -> {ok, Data};
                _ -> {ok, File}
            end;
        {error, File, Reason} ->
            {error, {write_output, File, file:format_error(Reason)}}
    end.

%% Writes Data into a new file (O_EXCL: never one that exists, never
%% through a link), under a new name if the one made is taken; a file that
%% could not be written whole is removed.
-spec create(fun(() -> file:filename()), iodata(), pos_integer()) ->
          {ok, file:filename()} | {error, file:filename(), term()}.
create(NewName, Data, Tries) ->
    File = NewName(),
    case file:open(File, [write, exclusive, raw, binary]) of
        {ok, Fd} ->
            Written = file:write(Fd, Data),
            Closed = file:close(Fd),
            case {Written, Closed} of
                {ok, ok} ->
                    {ok, File};
                _ ->
                    _ = file:delete(File),
                    {error, File, element(2, hd([R || {error, _} = R <- [Written, Closed]]))}
            end;
        {error, eexist} when Tries > 1 ->
            create(NewName, Data, Tries - 1);
        {error, Reason} ->
            {error, File, Reason}
    end.

%% Starts the viewer on the file, without a shell (nothing in a file or
%% directory name is ever interpreted), and does not wait for it.
-spec open(file:filename(), file:filename() | undefined) -> ok.
open(_File, undefined) ->
    ok;
open(File, Program) ->
    _ = spawn(fun() ->
                      try open_port({spawn_executable, Program},
                                    [{args, [File]}, exit_status, nouse_stdio]) of
                          Port -> receive {Port, {exit_status, _}} -> ok end
                      catch
                          error:Reason ->
                              logger:warning("eflambe: cannot open ~ts with ~ts: ~p",
                                             [File, Program, Reason])
                      end
              end),
    ok.

%% One result per profiled call, in the order the folder gives them: the
%% order they ended; then the calls the trace ended before they did (a
%% timeout, a node that died), in the order they began, their process
%% frames marked (unfinished).
-spec write_calls([map()], map(), eflambe_options:opts()) ->
          {ok, [binary() | file:filename()]} | {error, term()}.
write_calls(Windows, Info, Opts) ->
    write_all([Data || #{data := Data} <- Windows], Info, Opts).

%% One result per flamegraph, in order.
-spec write_all([binary()], map(), eflambe_options:opts()) ->
          {ok, [binary() | file:filename()]} | {error, term()}.
write_all(Datas, Info, Opts) ->
    write_all(Datas, Info, Opts, []).

-spec write_all([binary()], map(), eflambe_options:opts(), list()) ->
          {ok, [binary() | file:filename()]} | {error, term()}.
write_all([], _Info, _Opts, Acc) ->
    {ok, lists:reverse(Acc)};
write_all([Data | Rest], Info, Opts, Acc) ->
    case write(Data, Info, Opts) of
        {ok, Result} -> write_all(Rest, Info, Opts, [Result | Acc]);
        {error, _} = Error -> Error
    end.

-spec directory(file:filename() | undefined) -> file:filename().
directory(undefined) ->
    {ok, Cwd} = file:get_cwd(),
    Cwd;
directory(Dir) ->
    Dir.

%% eflambe-20261123T102822-<os pid>-<n><Ext>: sorts by time, unique among
%% the nodes of a machine (files are created with O_EXCL all the same).
-spec file_name(string()) -> string().
file_name(Ext) ->
    {{Y, Mo, D}, {H, Mi, S}} = calendar:local_time(),
    Stamp = io_lib:format("~4..0B~2..0B~2..0BT~2..0B~2..0B~2..0B", [Y, Mo, D, H, Mi, S]),
    lists:flatten(["eflambe-", Stamp, "-", os:getpid(), "-",
                   integer_to_list(erlang:unique_integer([positive])), Ext]).
