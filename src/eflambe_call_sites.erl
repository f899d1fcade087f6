%% @private
%% The site table of a run: which calls in the traced modules' code are body
%% calls and which are tail calls. The trace shows both as the same `call'
%% event; the folder needs to know, since a tail call replaces its caller's
%% frame. Read from the code each module has loaded now (the code that ran),
%% after recording stops, and appended to the run's archive.
-module(eflambe_call_sites).

-export([add/2]).

-include_lib("kernel/include/logger.hrl").

%% Appends the site table of Modules to the closed archive. A module whose
%% loaded code cannot be found (preloaded, loaded from memory, changed on
%% disk since it was loaded) is left out: its calls are told apart by the
%% trace alone, which is exact only where the stack is not ambiguous.
-spec add(file:filename_all(), [module()]) -> ok.
add(Archive, Modules) ->
    Beams = lists:filtermap(fun loaded_code/1, Modules),
    case eflambe_tracer:add_call_sites(eflambe_options:native_name(Archive), Beams, bifs(Modules)) of
        {ok, _Counts} ->
            ok;
        {error, Reason} ->
            ?LOG_WARNING("eflambe: no site table in ~ts (~p): tail calls are guessed", [Archive, Reason])
    end.

%% The object code of the loaded version of Module, if it can be found.
-spec loaded_code(module()) -> {true, {module(), binary()}} | false.
loaded_code(Module) ->
    case code:which(Module) of
        Path when is_list(Path) ->
            case file:read_file(Path) of
                {ok, Beam0} ->
                    Beam = uncompressed(Beam0),
                    case same_code(Module, Beam) of
                        true -> {true, {Module, Beam}};
                        false -> false
                    end;
                {error, _} ->
                    false
            end;
        _ ->
            false
    end.

-spec uncompressed(binary()) -> binary().
uncompressed(<<31, 139, _/binary>> = Gzipped) ->
    try zlib:gunzip(Gzipped) catch error:_ -> Gzipped end;
uncompressed(Beam) ->
    Beam.

-spec same_code(module(), binary()) -> boolean().
same_code(Module, Beam) ->
    try
        {ok, {Module, Md5}} = beam_lib:md5(Beam),
        Md5 =:= Module:module_info(md5)
    catch
        _:_ -> false
    end.

%% The BIFs of the traced modules (a BIF that ran is a function of one of
%% them): the VM runs a BIF as a body call (it returns to its caller) even
%% from a tail position.
-spec bifs([module()]) -> [mfa()].
bifs(Modules) ->
    [{M, F, A} || M <- Modules, erlang:module_loaded(M),
                  {F, A} <- exports(M), erlang:is_builtin(M, F, A)].

-spec exports(module()) -> [{atom(), arity()}].
exports(Module) ->
    try Module:module_info(exports) catch error:_ -> [] end.
