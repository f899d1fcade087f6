%% @private
%% The site table of a run: which calls in the traced modules' code are body
%% calls and which are tail calls. The trace shows both as the same `call'
%% event; the folder needs to know, since a tail call replaces its caller's
%% frame. Read from the code each module has loaded now (the code that ran),
%% after recording stops, and appended to the run's archive.
-module(eflambe_call_sites).

-export([add/2, add/3]).

-include_lib("kernel/include/logger.hrl").

%% Bounds on what is read: the reader's own limit per module (32 MiB, the
%% largest OTP module is under 1 MB), and for all a run's modules.
-define(MODULE_MAX_BYTES, (32 bsl 20)).
-define(RUN_MAX_BYTES, (512 bsl 20)).

%% Appends the site table of Modules to the closed archive. A module whose
%% loaded code cannot be found (loaded from memory, changed on disk since
%% it was loaded, a newer compiler's) is left out, with a warning: its
%% calls are told apart by the trace alone, which is exact only where the
%% stack is not ambiguous. Preloaded modules (erlang, prim_file...) have
%% no object file; they are left out silently.
-spec add(file:filename_all(), [module()]) -> [{module(), term()}].
add(Archive, Modules) ->
    add(Archive, Modules, []).

%% The same, with what the run's processes are called (names/1).
-spec add(file:filename_all(), [module()], [{binary(), binary()}]) -> [{module(), term()}].
add(Archive, Modules, Processes) ->
    {Beams, Unread} = read(Modules, ?RUN_MAX_BYTES, [], []),
    Left = case eflambe_tracer:add_call_sites(eflambe_options:native_name(Archive), Beams,
                                              bifs(Modules), Processes) of
               {ok, #{unreadable := NotFollowed}} ->
                   Unread ++ NotFollowed;
               {error, Reason} ->
                   ?LOG_WARNING("eflambe: no site table in ~ts (~p): tail calls are guessed",
                                [Archive, Reason]),
                   Unread
           end,
    warn(Left),
    Left.

%% The object code of the loaded version of each module, within Budget
%% bytes in all; the modules left out, with why.
-spec read([module()], integer(), [tuple()], [{module(), term()}]) ->
          {[tuple()], [{module(), term()}]}.
read([], _Budget, Beams, Unread) ->
    {Beams, lists:reverse(Unread)};
read([Module | Modules], Budget, Beams, Unread) when Budget =< 0 ->
    read(Modules, Budget, Beams, [{Module, run_limit} | Unread]);
read([Module | Modules], Budget, Beams, Unread) ->
    case loaded_code(Module) of
        {ok, Beam} ->
            read(Modules, Budget - byte_size(Beam), [with_source(Module, Beam) | Beams], Unread);
        preloaded ->
            read(Modules, Budget, Beams, Unread);
        {error, Why} ->
            read(Modules, Budget, Beams, [{Module, Why} | Unread])
    end.

%% The module's source file, as its compile info names it, for the
%% outputs that name files (pprof's).
-spec with_source(module(), binary()) -> {module(), binary()} | {module(), binary(), binary()}.
with_source(Module, Beam) ->
    try proplists:get_value(source, Module:module_info(compile)) of
        Source when is_list(Source) -> {Module, Beam, unicode:characters_to_binary(Source)};
        _ -> {Module, Beam}
    catch
        _:_ -> {Module, Beam}
    end.

-spec loaded_code(module()) -> {ok, binary()} | preloaded | {error, term()}.
loaded_code(Module) ->
    case code:which(Module) of
        preloaded ->
            preloaded;
        Path when is_list(Path) ->
            case eflambe_tracer:read_code(eflambe_options:native_name(Path)) of
                {ok, Beam0} ->
                    case uncompressed(Beam0) of
                        {ok, Beam} ->
                            case same_code(Module, Beam) of
                                true -> {ok, Beam};
                                false -> {error, changed_since_loaded}
                            end;
                        {error, _} = Error ->
                            Error
                    end;
                {error, _} = Error ->
                    Error
            end;
        Other ->
            {error, Other}
    end.

%% A compressed object file (compile's `compressed'), inflated to at most
%% the reader's limit: a small file may inflate to gigabytes.
-spec uncompressed(binary()) -> {ok, binary()} | {error, too_large}.
uncompressed(<<31, 139, _/binary>> = Gzipped) ->
    Z = zlib:open(),
    try
        ok = zlib:inflateInit(Z, 31),
        inflate(Z, zlib:safeInflate(Z, Gzipped), [], 0)
    catch
        error:_ -> {ok, Gzipped} % not gzip after all: the reader refuses it
    after
        zlib:close(Z)
    end;
uncompressed(Beam) ->
    {ok, Beam}.

-spec inflate(zlib:zstream(), {continue | finished, iodata()}, [iodata()], non_neg_integer()) ->
          {ok, binary()} | {error, too_large}.
inflate(Z, {More, Out}, Acc, Size0) ->
    case Size0 + iolist_size(Out) of
        Size when Size > ?MODULE_MAX_BYTES -> {error, too_large};
        Size when More =:= continue -> inflate(Z, zlib:safeInflate(Z, []), [Out | Acc], Size);
        _ when More =:= finished -> {ok, iolist_to_binary(lists:reverse(Acc, [Out]))}
    end.

-spec same_code(module(), binary()) -> boolean().
same_code(Module, Beam) ->
    try
        {ok, {Module, Md5}} = beam_lib:md5(Beam),
        Md5 =:= Module:module_info(md5)
    catch
        _:_ -> false
    end.

%% Names the modules left out, and why, once per run.
-spec warn([{module(), term()}]) -> ok.
warn([]) ->
    ok;
warn(Left) ->
    ?LOG_WARNING("eflambe: the call sites of ~b module(s) could not be read: ~ts; their "
                 "tail calls are guessed from the trace, and a recursion in them may be "
                 "drawn shallower than it was",
                 [length(Left),
                  lists:join(", ", [io_lib:format("~ts (~ts)", [atom_to_list(M), why(Why)])
                                    || {M, Why} <- Left])]).

-spec why(term()) -> iodata().
why(changed_since_loaded) -> "object file changed since it was loaded";
why(enoent) -> "object file gone";
why(non_existing) -> "no object file";
why(cover_compiled) -> "cover-compiled";
why(not_regular) -> "object file is not a regular file";
why(too_large) -> "object file over 32 MiB";
why(run_limit) -> "over the run's 512 MiB of object code";
why(bad_argument) -> "object file damaged";
why(unsupported_version) -> "a newer compiler's code";
why(limit_exceeded) -> "beyond the reader's bounds";
why(Other) -> io_lib:format("~p", [Other]).

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
