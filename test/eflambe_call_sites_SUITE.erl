%% Reading the traced modules' code when a run stops: whatever sits at a
%% module's object file path (a FIFO, a device, a huge or inflating file,
%% another build's tables, a newer version), the run ends, the node's file
%% I/O goes on, memory stays bounded, and a module whose call sites could
%% not be read is named in a warning.
-module(eflambe_call_sites_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

all() ->
    [read_from_object_file, fifo_at_object_path, device_at_object_path, huge_object_file,
     inflating_object_file, second_tables_appended, recompiled_since_loading,
     loaded_from_binary].

end_per_testcase(_Case, _Config) ->
    _ = eflambe:stop(),
    ok.

%% ---- helpers ------------------------------------------------------------

%% A module whose run/0 makes a 6-deep body recursion, then burns a while
%% on top of it: its exact stacks show deep/1 six times (deep(0)'s frame
%% is replaced by its tail call of burn/1).
source(Module, Shape) ->
    Deep = case Shape of
               body -> "deep(N) -> [N | deep(N - 1)].";
               tail -> "deep(N) -> deep(N - 1)."
           end,
    io_lib:format("-module(~s).~n-export([run/0]).~n"
                  "run() -> deep(6).~n"
                  "deep(0) -> burn(30000);~n~s~n"
                  "burn(0) -> [];~nburn(N) -> _ = erlang:phash2(N), burn(N - 1).~n",
                  [Module, Deep]).

%% The object code of Module in that shape.
compile(Dir, Module, Shape) ->
    Src = filename:join(Dir, atom_to_list(Module) ++ ".erl"),
    ok = filelib:ensure_dir(Src),
    ok = file:write_file(Src, source(Module, Shape)),
    {ok, Module, Beam} = compile:file(Src, [binary, report]),
    Beam.

%% Module loaded from Dir/Module.beam (that shape), the path returned.
load(Config, Module, Shape) ->
    Dir = ?config(priv_dir, Config),
    Path = filename:join(Dir, atom_to_list(Module) ++ ".beam"),
    ok = file:write_file(Path, compile(Dir, Module, Shape)),
    {module, Module} = code:load_abs(filename:rootname(Path)),
    Path.

%% Profiles Module:run/0 in a process of its own, within a bound; the
%% folded lines and the warnings logged.
profile(Module) ->
    Self = self(),
    {Pid, Ref} = spawn_monitor(
                   fun() ->
                           Self ! {self(), eflambe_test_util:with_warnings(
                                             fun() ->
                                                     eflambe:apply({Module, run, []},
                                                                   [{return, flamegraph}])
                                             end)}
                   end),
    receive
        {Pid, {{ok, Folded}, Warnings}} ->
            erlang:demonitor(Ref, [flush]),
            {eflambe_test_util:parse(Folded), Warnings};
        {'DOWN', Ref, process, Pid, Reason} ->
            ct:fail({profile_died, Reason})
    after 60000 ->
            exit(Pid, kill),
            _ = eflambe:stop(),
            ct:fail(profile_hangs)
    end.

%% The most frames deep/1 has in any stack.
deep_frames(Module, Lines) ->
    Deep = iolist_to_binary([atom_to_list(Module), ":deep/1"]),
    lists:max([length([F || F <- Frames, F =:= Deep]) || {Frames, _} <- Lines]).

%% The one warning that names Module, and says why.
assert_warned(Module, Why, Warnings) ->
    Name = atom_to_binary(Module),
    case [W || W <- Warnings, binary:match(W, Name) =/= nomatch] of
        [W] -> ?assertNotEqual(nomatch, binary:match(W, Why), W);
        Other -> ct:fail({warnings, Module, Other, Warnings})
    end.

assert_not_warned(Module, Warnings) ->
    Name = atom_to_binary(Module),
    ?assertEqual([], [W || W <- Warnings, binary:match(W, Name) =/= nomatch]).

%% The node's file server still answers.
assert_file_server_answers(Config) ->
    Self = self(),
    spawn(fun() -> Self ! {file_server, file:read_file_info(?config(priv_dir, Config))} end),
    receive {file_server, {ok, _}} -> ok
    after 5000 -> ct:fail(file_server_blocked)
    end.

%% ---- cases --------------------------------------------------------------

%% The reference: a module read from its object file has its exact stacks.
read_from_object_file(Config) ->
    _ = load(Config, cs_plain, body),
    {Lines, Warnings} = profile(cs_plain),
    ?assertEqual(6, deep_frames(cs_plain, Lines)),
    assert_not_warned(cs_plain, Warnings).

%% A FIFO never opened for writing, at the path the module was loaded
%% from: the run ends, nothing blocks the node's file I/O.
fifo_at_object_path(Config) ->
    Path = load(Config, cs_fifo, body),
    ok = file:delete(Path),
    {0, _} = eflambe_test_util:run(os:find_executable("mkfifo"), [Path]),
    {Lines, Warnings} = profile(cs_fifo),
    ct:pal("guessed: deep/1 ~b deep", [deep_frames(cs_fifo, Lines)]),
    ?assert(deep_frames(cs_fifo, Lines) >= 1),
    assert_warned(cs_fifo, <<"not a regular file">>, Warnings),
    assert_file_server_answers(Config).

%% A link to /dev/zero: refused, not read until memory runs out.
device_at_object_path(Config) ->
    Path = load(Config, cs_zero, body),
    ok = file:delete(Path),
    ok = file:make_symlink("/dev/zero", Path),
    Before = erlang:memory(total),
    {_Lines, Warnings} = profile(cs_zero),
    ?assert(erlang:memory(total) - Before < 64 bsl 20),
    assert_warned(cs_zero, <<"not a regular file">>, Warnings).

%% A 2 GB sparse file: refused by its size, not read.
huge_object_file(Config) ->
    Path = load(Config, cs_huge, body),
    {ok, F} = file:open(Path, [write, raw]),
    {ok, _} = file:position(F, 2 bsl 30),
    ok = file:write(F, <<0>>),
    ok = file:close(F),
    T0 = erlang:monotonic_time(millisecond),
    {_Lines, Warnings} = profile(cs_huge),
    ?assert(erlang:monotonic_time(millisecond) - T0 < 20000),
    assert_warned(cs_huge, <<"over 32 MiB">>, Warnings).

%% A small gzip file that inflates to far more than any module: inflated
%% up to the reader's bound only.
inflating_object_file(Config) ->
    Path = load(Config, cs_bomb, body),
    ok = file:write_file(Path, zlib:gzip(binary:copy(<<0>>, 48 bsl 20))),
    Before = erlang:memory(total),
    {_Lines, Warnings} = profile(cs_bomb),
    ?assert(erlang:memory(total) - Before < 200 bsl 20),
    assert_warned(cs_bomb, <<"over 32 MiB">>, Warnings).

%% Another build's atom, import and code tables appended to the loaded
%% module's file: its MD5 (the first tables') still matches the loaded
%% code, but which tables the reader would take is a guess: refused.
second_tables_appended(Config) ->
    Path = load(Config, cs_twice, body),
    Other = compile(filename:join(?config(priv_dir, Config), "other"), cs_twice, tail),
    {ok, Loaded} = file:read_file(Path),
    ok = file:write_file(Path, append_chunks(Loaded, Other, [<<"AtU8">>, <<"ImpT">>, <<"Code">>])),
    {ok, {cs_twice, Md5}} = beam_lib:md5(Path),
    ?assertEqual(cs_twice:module_info(md5), Md5),
    {_Lines, Warnings} = profile(cs_twice),
    assert_warned(cs_twice, <<"damaged">>, Warnings).

%% The module recompiled on disk since it was loaded: its calls are
%% guessed, and the warning says why.
recompiled_since_loading(Config) ->
    Path = load(Config, cs_recompiled, body),
    ok = file:write_file(Path, compile(filename:join(?config(priv_dir, Config), "other"),
                                       cs_recompiled, tail)),
    {_Lines, Warnings} = profile(cs_recompiled),
    assert_warned(cs_recompiled, <<"changed since it was loaded">>, Warnings).

%% Loaded from a binary: no object file to read.
loaded_from_binary(Config) ->
    Beam = compile(?config(priv_dir, Config), cs_binary, body),
    {module, cs_binary} = code:load_binary(cs_binary, "cs_binary_nofile", Beam),
    {_Lines, Warnings} = profile(cs_binary),
    assert_warned(cs_binary, <<"object file gone">>, Warnings).

%% Beam with the chunks of Other named by Ids appended.
append_chunks(<<"FOR1", _:32, "BEAM", Chunks/binary>>, Other, Ids) ->
    <<"FOR1", _:32, "BEAM", OtherChunks/binary>> = Other,
    Extra = [C || {Id, _} = C <- chunks(OtherChunks), lists:member(Id, Ids)],
    Body = iolist_to_binary([Chunks | [[Id, <<(byte_size(D)):32>>, D, pad(byte_size(D))]
                                       || {Id, D} <- Extra]]),
    <<"FOR1", (byte_size(Body) + 4):32, "BEAM", Body/binary>>.

chunks(<<Id:4/binary, Size:32, Data:Size/binary, Rest0/binary>>) ->
    Pad = byte_size(pad(Size)),
    <<_:Pad/binary, Rest/binary>> = Rest0,
    [{Id, Data} | chunks(Rest)];
chunks(_) ->
    [].

pad(Size) ->
    binary:copy(<<0>>, (4 - Size rem 4) rem 4).
