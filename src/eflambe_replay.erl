%% @private
%% eflambe:replay: folds a kept trace archive into any output format,
%% later or on another machine, as the live run would have.
-module(eflambe_replay).

-export([replay/2, calls/1, archive_file/1]).

-include_lib("kernel/include/file.hrl").
-include_lib("kernel/include/logger.hrl").

-spec replay(term(), term()) -> {ok, term()} | {error, term()}.
replay(Path, Options) ->
    case eflambe_options:parse(replay, Options) of
        {ok, Opts} ->
            case archive_file(Path) of
                {ok, File} -> replay_file(File, Opts);
                {error, _} = Error -> Error
            end;
        {error, _} = Error ->
            Error
    end.

%% The calls an archive holds, in the order capture and replay give their
%% results (its index: replay's list position, eflambe-fold --call's K),
%% with their process, start (microseconds from the first call's),
%% duration, and how each ended.
-spec calls(term()) -> {ok, [map()]} | {error, term()}.
calls(Path) ->
    case archive_file(Path) of
        {ok, File} ->
            {module, eflambe_tracer} = code:ensure_loaded(eflambe_tracer),
            case eflambe_tracer:archive_calls(eflambe_options:native_name(File)) of
                {ok, Calls} -> {ok, [C#{pid := list_to_binary(Pid)} || #{pid := Pid} = C <- Calls]};
                {error, {Reason, _}} -> {error, {Reason, File}}
            end;
        {error, _} = Error ->
            Error
    end.

%% Path, if it names a regular file: not a FIFO (which would block) or
%% anything else; the NIF checks again as it opens it.
-spec archive_file(term()) -> {ok, file:filename_all()} | {error, term()}.
archive_file(Path) ->
    case eflambe_options:file_name(Path) of
        {ok, File} ->
            case file:read_file_info(File) of
                {ok, #file_info{type = regular}} -> {ok, File};
                {ok, #file_info{type = directory}} -> {error, {archive, File, "is a directory"}};
                {ok, _} -> {error, {archive, File, "not a regular file"}};
                {error, Reason} -> {error, {archive, File, file:format_error(Reason)}}
            end;
        error ->
            {error, {bad_archive, Path}}
    end.

%% An archive of apply holds one call (and the processes it spawned): one
%% result. An archive of capture holds one per captured call: a list, in
%% the order the calls ended, as capture returned them.
-spec replay_file(file:filename_all(), eflambe_options:opts()) -> {ok, term()} | {error, term()}.
replay_file(File, #{output_format := Format} = Opts) ->
    {module, eflambe_tracer} = code:ensure_loaded(eflambe_tracer),
    case eflambe_tracer:archive_header(eflambe_options:native_name(File)) of
        {ok, Meta} ->
            Split = lists:member(<<"mode=capture">>, binary:split(Meta, <<"\n">>, [global])),
            case eflambe_session:fold(File, Format, Split, Opts) of
                {ok, Data, Info} ->
                    warn_if_damaged(File, Info),
                    case Split of
                        true -> eflambe_output:write_calls(Data, Info, Opts);
                        false -> eflambe_output:write(Data, Info, Opts)
                    end;
                {error, {write_output, _, _}} = Error ->
                    Error;
                {error, {Reason, _}} ->
                    {error, {Reason, File}}
            end;
        {error, {Reason, _}} ->
            {error, {Reason, File}}
    end.

-spec warn_if_damaged(file:filename(), map()) -> ok.
warn_if_damaged(File, #{truncated := true}) ->
    ?LOG_WARNING("eflambe: ~ts is truncated; folded up to its last complete frame", [File]);
warn_if_damaged(_File, _Info) ->
    ok.
