%% Trace archives: kept, replayed, folded by the CLI; a corpus of valid and
%% damaged archives with the expected outcome of each.
-module(eflambe_archive_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").
-include_lib("kernel/include/file.hrl").

-compile([export_all, nowarn_export_all]).

-define(W, eflambe_workload).

all() ->
    [corpus_replay, corpus_cli, apply_round_trip, capture_round_trip, replay_errors,
     cli_usage, archive_option_errors, archive_files_are_safe].

%% ---- helpers ------------------------------------------------------------

root() ->
    filename:dirname(filename:dirname(code:which(?MODULE))).

corpus_dir() ->
    %% rebar3 copies test/ under _build; the corpus is read from the source.
    Src = proplists:get_value(source, ?MODULE:module_info(compile)),
    filename:join([filename:dirname(Src), "data", "archives"]).

cli() ->
    filename:join(code:priv_dir(eflambe), "eflambe-fold").

%% Runs the CLI: {ExitStatus, Output}.
run_cli(Args) ->
    eflambe_test_util:run(cli(), Args).

expected() ->
    {ok, Bin} = file:read_file(filename:join(corpus_dir(), "expected.txt")),
    [string:lexemes(L, " ") || L <- string:lexemes(binary_to_list(Bin), "\n"),
                               hd(L) =/= $#].

golden(Name) ->
    {ok, Bin} = file:read_file(filename:join(corpus_dir(), Name)),
    Bin.

%% ---- cases --------------------------------------------------------------

%% replay gives each file's expected result, never a crash.
corpus_replay(_Config) ->
    [begin
         Path = filename:join(corpus_dir(), File),
         Got = eflambe:replay(Path, [{return, flamegraph}]),
         ct:pal("~s: ~P", [File, Got, 6]),
         case Outcome of
             Ok when Ok =:= "ok"; Ok =:= "truncated" ->
                 Want = case Goldens of
                            ["-"] -> {ok, <<>>};
                            [One] -> {ok, golden(One)};
                            Many -> {ok, [golden(G) || G <- Many]}
                        end,
                 ?assertEqual(Want, Got);
             Error ->
                 ?assertEqual({error, {list_to_atom(Error), Path}}, Got)
         end
     end || [File, Outcome | Goldens] <- expected()].

%% The CLI agrees, with its exit status.
corpus_cli(_Config) ->
    [begin
         Path = filename:join(corpus_dir(), File),
         case Outcome of
             Ok when Ok =:= "ok"; Ok =:= "truncated" ->
                 Calls = case Goldens of
                             ["-"] -> [{[], <<>>}];
                             [One] -> [{[], golden(One)}];
                             Many -> [{["--call", integer_to_list(I)], golden(G)}
                                      || {I, G} <- lists:zip(lists:seq(1, length(Many)), Many)]
                         end,
                 [begin
                      Out = filename:join(?config(priv_dir, _Config), File ++ ".out"),
                      {Status, Msg} = run_cli([Path, "-o", Out | Extra]),
                      ?assertEqual(0, Status),
                      ?assertEqual(Outcome =:= "truncated",
                                   binary:match(Msg, <<"truncated">>) =/= nomatch),
                      {ok, Bin} = file:read_file(Out),
                      ?assertEqual(Want, Bin)
                  end || {Extra, Want} <- Calls];
             _Error ->
                 {Status, Msg} = run_cli([Path]),
                 ct:pal("~s: ~s", [File, Msg]),
                 ?assertEqual(1, Status),
                 ?assertNotEqual(nomatch, binary:match(Msg, list_to_binary(Path)))
         end
     end || [File, Outcome | Goldens] <- expected()].

%% A live run, its replay and the CLI give the same flamegraph.
apply_round_trip(Config) ->
    Archive = filename:join(?config(priv_dir, Config), "apply.eftrace"),
    {ok, Live} = eflambe:apply({?W, two, [16]}, [{return, flamegraph}, {archive, Archive}]),
    ?assertEqual({ok, Live}, eflambe:replay(Archive, [{return, flamegraph}])),
    ?assertEqual({0, Live}, run_cli([Archive])),
    ?assertNotEqual(<<>>, Live).

capture_round_trip(Config) ->
    Archive = filename:join(?config(priv_dir, Config), "capture.eftrace"),
    Self = self(),
    spawn(fun() ->
                  Self ! {captured, eflambe:capture({?W, two, 1}, 2,
                                                    [{return, flamegraph}, {archive, Archive}])}
          end),
    timer:sleep(300),
    [spawn(fun() -> ?W:two(12 + I) end) || I <- [1, 2]],
    Live = receive {captured, {ok, L}} -> L after 20000 -> error(timeout) end,
    ?assertEqual(2, length(Live)),
    ?assertEqual({ok, Live}, eflambe:replay(Archive, [{return, flamegraph}])),
    [?assertEqual({0, L}, run_cli([Archive, "--call", integer_to_list(I)]))
     || {I, L} <- lists:zip([1, 2], Live)].

replay_errors(Config) ->
    ?assertMatch({error, {archive, "/nonexistent/x", _}}, eflambe:replay("/nonexistent/x", [])),
    ?assertMatch({error, {bad_archive, 42}}, eflambe:replay(42, [])),
    ?assertMatch({error, {bad_return, value, _}},
                 eflambe:replay(filename:join(corpus_dir(), "apply.eftrace"), [{return, value}])),
    ?assertMatch({error, {unknown_option, {buffer_size, 1}}},
                 eflambe:replay(filename:join(corpus_dir(), "apply.eftrace"), [{buffer_size, 1}])),
    %% Written to a file by default.
    Dir = ?config(priv_dir, Config),
    {ok, File} = eflambe:replay(filename:join(corpus_dir(), "apply.eftrace"),
                                [{output_directory, Dir}]),
    ?assertEqual({ok, golden("apply.folded")}, file:read_file(File)).

cli_usage(_Config) ->
    {0, Help} = run_cli(["--help"]),
    ?assertNotEqual(nomatch, binary:match(Help, <<"usage: eflambe-fold">>)),
    ?assertMatch({2, _}, run_cli([])),
    ?assertMatch({2, _}, run_cli(["x", "--format", "nope"])),
    ?assertMatch({2, _}, run_cli(["x", "--bogus"])),
    ?assertMatch({2, _}, run_cli(["x", "--call", "0"])),
    {1, Msg} = run_cli(["/nonexistent/archive"]),
    ?assertNotEqual(nomatch, binary:match(Msg, <<"No such file">>)),
    ?assertMatch({1, _}, run_cli([filename:join(corpus_dir(), "capture.eftrace"), "--call", "3"])).

archive_option_errors(_Config) ->
    ?assertMatch({error, {archive, "/nonexistent", _}},
                 eflambe:apply({?W, fib, [5]}, [{archive, "/nonexistent/a.eftrace"}])),
    ?assertMatch({error, {archive, "/tmp", "is a directory"}},
                 eflambe:apply({?W, fib, [5]}, [{archive, "/tmp"}])),
    ?assertMatch({error, {bad_archive, 42}}, eflambe:capture({?W, fib, 1}, 1, [{archive, 42}])).

%% An archive is a new file, mode 0600, never written through a link or
%% into a FIFO; a regular file at the path asked for is replaced; the
%% temporary archive is gone after the run and its name is unguessable.
archive_files_are_safe(Config) ->
    Dir = ?config(priv_dir, Config),
    Kept = filename:join(Dir, "kept.eftrace"),
    ok = file:write_file(Kept, <<"old contents">>),
    {ok, _} = eflambe:apply({?W, fib, [10]}, [{archive, Kept}, {return, flamegraph}]),
    {ok, #file_info{mode = Mode, type = regular}} = file:read_link_info(Kept),
    ?assertEqual(8#600, Mode band 8#777),
    %% (In the traced run's time: fib(10)'s, its tracing cost taken out,
    %% can round to no microsecond at all on a busy machine.)
    ?assertMatch({ok, <<_, _/binary>>}, eflambe:replay(Kept, [{return, flamegraph}, {compensate, false}])),
    Target = filename:join(Dir, "archive-link-target"),
    ok = file:write_file(Target, <<"keep me">>),
    Link = filename:join(Dir, "link.eftrace"),
    ok = file:make_symlink(Target, Link),
    ?assertEqual({error, {archive, Link, "not a regular file"}},
                 eflambe:apply({?W, fib, [10]}, [{archive, Link}])),
    ?assertEqual({ok, <<"keep me">>}, file:read_file(Target)),
    Fifo = filename:join(Dir, "fifo.eftrace"),
    "" = os:cmd("mkfifo " ++ Fifo),
    ?assertEqual({error, {archive, Fifo, "not a regular file"}},
                 eflambe:apply({?W, fib, [10]}, [{archive, Fifo}])),
    Before = temp_archives(),
    {ok, _} = eflambe:apply({?W, fib, [10]}, [{return, flamegraph}]),
    ?assertEqual(Before, temp_archives()),
    A = eflambe_session:temp_archive(),
    ?assertNotEqual(A, eflambe_session:temp_archive()),
    ?assertMatch({match, _}, re:run(filename:basename(A), "^eflambe-[0-9]+-[0-9a-f]{16}\\.eftrace$")).

temp_archives() ->
    Dir = case os:getenv("TMPDIR") of false -> "/tmp"; "" -> "/tmp"; D -> D end,
    lists:sort(filelib:wildcard(filename:join(Dir, "eflambe-" ++ os:getpid() ++ "-*.eftrace"))).
