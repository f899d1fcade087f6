%% @private
%% eflambe:diff: what changed between two profiles. Each side is folded
%% (an archive, one call of a capture's archive, or a folded file as it
%% is), and the C folder matches their stacks by name: a line per stack
%% with both counts, an SVG coloured by change, or a pprof profile with
%% Base's samples negated.
-module(eflambe_diff).

-export([diff/3]).

-include_lib("kernel/include/file.hrl").

%% Folded files read as a side: at most this many bytes.
-define(FOLDED_MAX_BYTES, 1 bsl 30).

-spec diff(term(), term(), term()) -> {ok, binary() | file:filename()} | {error, term()}.
diff(Base, New, Options) ->
    case eflambe_options:parse(diff, Options) of
        {ok, #{output_format := Format, normalize := Normalize} = Opts} ->
            case {side(Base, Opts), side(New, Opts)} of
                {{ok, B, BaseName}, {ok, N, NewName}} ->
                    Meta = iolist_to_binary(["mode=diff\ntarget=", NewName, " against ", BaseName,
                                             "\n"]),
                    eflambe_output:made(
                      fun(Out) ->
                              eflambe_tracer:diff_folded(B, N, Format,
                                                         Out#{meta => Meta, normalize => Normalize})
                      end, Opts);
                {{error, _} = Error, _} ->
                    Error;
                {_, {error, _} = Error} ->
                    Error
            end;
        {error, _} = Error ->
            Error
    end.

%% One side's folded stacks, and what to call it in the title.
-spec side(term(), eflambe_options:opts()) -> {ok, binary(), iodata()} | {error, term()}.
side({folded, Folded}, _Opts) when is_binary(Folded) ->
    {ok, Folded, "folded stacks"};
side({Path, Index}, Opts) when is_integer(Index), Index >= 1 ->
    case archive(Path) of
        {ok, File} ->
            case fold(File, true, Opts) of
                {ok, Calls} when Index =< length(Calls) ->
                    #{data := Folded} = lists:nth(Index, Calls),
                    {ok, Folded, io_lib:format("call ~b of ~ts", [Index, filename:basename(File)])};
                {ok, Calls} ->
                    {error, {no_such_call, Index, {calls, length(Calls)}}};
                {error, _} = Error ->
                    Error
            end;
        {error, _} = Error ->
            Error
    end;
side(Path, Opts) ->
    case eflambe_replay:archive_file(Path) of
        {ok, File} ->
            case is_archive(File) of
                true ->
                    case fold(File, false, Opts) of
                        {ok, Folded} -> {ok, Folded, filename:basename(File)};
                        {error, _} = Error -> Error
                    end;
                false ->
                    folded_file(File)
            end;
        {error, {bad_archive, _}} ->
            {error, {bad_profile, Path}};
        {error, _} = Error ->
            Error
    end.

-spec archive(term()) -> {ok, file:filename_all()} | {error, term()}.
archive(Path) ->
    case eflambe_replay:archive_file(Path) of
        {ok, File} ->
            case is_archive(File) of
                true -> {ok, File};
                false -> {error, {not_an_archive, File}}
            end;
        {error, _} = Error ->
            Error
    end.

%% Whether File is a trace archive (its header reads as one), or else
%% taken for folded stacks.
-spec is_archive(file:filename_all()) -> boolean().
is_archive(File) ->
    {module, eflambe_tracer} = code:ensure_loaded(eflambe_tracer),
    element(1, eflambe_tracer:archive_header(eflambe_options:native_name(File))) =:= ok.

%% The archive folded as brendan_gregg: all of it, or one result per call.
-spec fold(file:filename_all(), boolean(), eflambe_options:opts()) ->
          {ok, binary() | [map()]} | {error, term()}.
fold(File, Split, Opts) ->
    case eflambe_session:fold(File, brendan_gregg, Split, Opts#{return := flamegraph}) of
        {ok, Folded, _Info} -> {ok, Folded};
        {error, {Reason, _}} -> {error, {Reason, File}};
        {error, _} = Error -> Error
    end.

-spec folded_file(file:filename_all()) -> {ok, binary(), iodata()} | {error, term()}.
folded_file(File) ->
    case file:read_file_info(File) of
        {ok, #file_info{size = Size}} when Size > ?FOLDED_MAX_BYTES ->
            {error, {folded_file_too_large, File, Size}};
        {ok, _} ->
            case file:read_file(File) of
                {ok, Folded} -> {ok, Folded, filename:basename(File)};
                {error, Reason} -> {error, {read, File, file:format_error(Reason)}}
            end;
        {error, Reason} ->
            {error, {read, File, file:format_error(Reason)}}
    end.
