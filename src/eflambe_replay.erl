%% @private
%% eflambe:replay: folds a kept trace archive into any output format,
%% later or on another machine, as the live run would have.
-module(eflambe_replay).

-export([replay/2]).

-include_lib("kernel/include/logger.hrl").

-spec replay(term(), term()) -> {ok, term()} | {error, term()}.
replay(Path, Options) ->
    case eflambe_options:parse(replay, Options) of
        {ok, Opts} ->
            case archive_path(Path) of
                {ok, File} ->
                    case filelib:is_regular(File) of
                        true -> replay_file(File, Opts);
                        false -> {error, {archive, File, "no such file"}}
                    end;
                {error, _} = Error ->
                    Error
            end;
        {error, _} = Error ->
            Error
    end.

-spec archive_path(term()) -> {ok, file:filename()} | {error, term()}.
archive_path(Path) ->
    case io_lib:char_list(Path) orelse is_binary(Path) of
        true -> {ok, unicode:characters_to_list(Path)};
        false -> {error, {bad_archive, Path}}
    end.

%% An archive of apply holds one call (and the processes it spawned): one
%% result. An archive of capture holds one per captured call: a list, in
%% the order the calls ended, as capture returned them.
-spec replay_file(file:filename(), eflambe_options:opts()) -> {ok, term()} | {error, term()}.
replay_file(File, #{output_format := Format} = Opts) ->
    {module, eflambe_tracer} = code:ensure_loaded(eflambe_tracer),
    case eflambe_tracer:archive_header(File) of
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
