%% Output formats: golden files from fixed archives, and a real profile in
%% every format checked by its real consumer (test/browser/check.mjs:
%% speedscope's importer and headless Chromium).
-module(eflambe_formats_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(W, eflambe_workload).
-define(FORMATS, [{perf, ".linux-perf.txt"}, {speedscope, ".speedscope.json"}, {svg, ".svg"}]).

all() ->
    [golden_replay, golden_cli, file_extensions, streamed_files, streaming_never_clobbers,
     svg_is_self_contained, open_in_program, real_consumers, perf_data_in_perf_and_hotspot,
     perf_data_files_only, pprof_in_go_tool, one_clock_per_run].

data_dir() ->
    Src = proplists:get_value(source, ?MODULE:module_info(compile)),
    filename:join(filename:dirname(Src), "data").

browser_dir() ->
    Src = proplists:get_value(source, ?MODULE:module_info(compile)),
    filename:join(filename:dirname(Src), "browser").

golden(Name) ->
    {ok, Bin} = file:read_file(filename:join([data_dir(), "golden", Name])),
    Bin.

archive(Name) ->
    filename:join([data_dir(), "archives", Name]).

%% Line by line, so a failure shows the first line that differs.
assert_same(Want, Got, What) ->
    WantLines = binary:split(Want, <<"\n">>, [global]),
    GotLines = binary:split(Got, <<"\n">>, [global]),
    First = [{N, W, G} || {N, W, G} <- lists:zip3(lists:seq(1, min(length(WantLines), length(GotLines))),
                                                  lists:sublist(WantLines, length(GotLines)),
                                                  lists:sublist(GotLines, length(WantLines))),
                          W =/= G],
    case {First, length(WantLines) =:= length(GotLines)} of
        {[], true} -> ok;
        {[{N, W, G} | _], _} -> ct:fail("~s differs at line ~b:~n want ~P~n got  ~P", [What, N, W, 20, G, 20]);
        {[], false} -> ct:fail("~s: ~b lines, want ~b", [What, length(GotLines), length(WantLines)])
    end.

%% ---- cases --------------------------------------------------------------

golden_replay(_Config) ->
    [begin
         {ok, Apply} = eflambe:replay(archive("apply.eftrace"), [{output_format, F}, {return, flamegraph}]),
         assert_same(golden("apply" ++ Ext), Apply, atom_to_list(F) ++ " of apply.eftrace"),
         {ok, [Call1, _]} = eflambe:replay(archive("capture.eftrace"),
                                           [{output_format, F}, {return, flamegraph}]),
         assert_same(golden("capture.1" ++ Ext), Call1, atom_to_list(F) ++ " of capture.eftrace")
     end || {F, Ext} <- ?FORMATS].

golden_cli(Config) ->
    Cli = filename:join(code:priv_dir(eflambe), "eflambe-fold"),
    [begin
         Out = filename:join(?config(priv_dir, Config), "out" ++ Ext),
         {0, _} = run(Cli, [archive("apply.eftrace"), "--format", atom_to_list(F), "-o", Out]),
         {ok, Got} = file:read_file(Out),
         assert_same(golden("apply" ++ Ext), Got, "eflambe-fold --format " ++ atom_to_list(F))
     end || {F, Ext} <- ?FORMATS].

file_extensions(Config) ->
    Dir = ?config(priv_dir, Config),
    [begin
         {ok, File} = eflambe:apply({?W, fib, [12]}, [{output_format, F}, {return, filename},
                                                      {output_directory, Dir}]),
         ?assertEqual(Ext, lists:nthtail(length(File) - length(Ext), File))
     end || {F, Ext} <- [{brendan_gregg, ".folded"}, {perf_data, ".perf.data"} | ?FORMATS]].

%% One file, nothing fetched from elsewhere.
svg_is_self_contained(_Config) ->
    {ok, Svg} = eflambe:apply({?W, two, [14]}, [{output_format, svg}, {return, flamegraph}]),
    ?assertMatch({match, _}, re:run(Svg, <<"^<\\?xml[^>]*>\\s*<svg ">>)),
    ?assertEqual(nomatch, re:run(Svg, <<"(href|src)=\"(https?:|//)">>)),
    ?assertEqual(nomatch, re:run(Svg, <<"<script[^>]+src=">>)),
    ?assertMatch({match, _}, re:run(Svg, <<"<title>eflambe_workload:slow/1 \\(\\d+ ">>)),
    ?assertMatch({match, _}, re:run(Svg, <<"Flame graph of eflambe_workload:two/1">>)).

%% {open, Program}: the program gets the file's name as its one argument,
%% with no shell in between, whatever the name holds.
open_in_program(Config) ->
    Priv = ?config(priv_dir, Config),
    Log = filename:join(Priv, "opened.txt"),
    Viewer = filename:join(Priv, "viewer"),
    ok = file:write_file(Viewer, ["#!/bin/sh\nprintf '%s|%s' \"$#\" \"$1\" > '", Log, "'\n"]),
    ok = file:change_mode(Viewer, 8#755),
    Dir = filename:join(Priv, "a dir; $(touch pwned) 'q'"),
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    {ok, File} = eflambe:apply({?W, fib, [10]}, [{open, Viewer}, {output_directory, Dir},
                                                  {return, filename}, {output_format, svg}]),
    wait_for_file(Log, 100),
    ?assertEqual({ok, iolist_to_binary(["1|", File])}, file:read_file(Log)),
    ?assertNot(filelib:is_regular(filename:join(Priv, "pwned"))),
    ?assertNot(filelib:is_regular("pwned")),
    %% hotspot opens perf.data only (or is not installed here).
    ?assertMatch({error, {open, H, _}} when H =:= hotspot; H =:= "hotspot",
                 eflambe:apply({?W, fib, [5]}, [{open, hotspot}])),
    ?assertMatch({error, {open, "no-such-viewer-here", _}},
                 eflambe:apply({?W, fib, [5]}, [{open, "no-such-viewer-here"}])),
    ?assertMatch({error, {bad_open, 42}}, eflambe:apply({?W, fib, [5]}, [{open, 42}])).

wait_for_file(File, 0) ->
    ct:fail("~s never written", [File]);
wait_for_file(File, N) ->
    case filelib:is_regular(File) of
        true -> timer:sleep(50);
        false -> timer:sleep(20), wait_for_file(File, N - 1)
    end.

%% A real profile (a parent that spawns a worker and waits for it), in
%% every format, through speedscope's importer and Chromium.
real_consumers(Config) ->
    Dir = ?config(priv_dir, Config),
    Archive = filename:join(Dir, "real.eftrace"),
    {ok, Folded} = eflambe:apply({?W, parent, [21]}, [{return, flamegraph}, {archive, Archive}]),
    Lines = eflambe_test_util:parse(Folded),
    Totals = lists:foldl(fun({[P | _], N}, M) -> maps:update_with(P, fun(X) -> X + N end, N, M) end,
                         #{}, Lines),
    ?assertEqual(2, map_size(Totals)),
    All = lists:sum(maps:values(Totals)),
    Fib = lists:sum([N || {Frames, N} <- Lines,
                          lists:any(fun(F) -> binary:match(F, <<"fib">>) =/= nomatch end, Frames)]),
    Files = [begin
                 {ok, File} = eflambe:replay(Archive, [{output_format, F}, {output_directory, Dir}]),
                 {F, File}
             end || F <- [brendan_gregg, perf, speedscope, svg, pprof]],
    TotalsJson = json_object([{P, integer_to_binary(N)} || {P, N} <- maps:to_list(Totals)]),
    %% Folded lines (and perf samples) are rounded to the microsecond one by
    %% one; speedscope's events are exact: half a microsecond per line apart.
    Tolerance = fun(F) when F =:= speedscope; F =:= pprof -> integer_to_binary(length(Lines) div 2 + 1);
                   (_) -> <<"1">>
                end,
    Manifest = iolist_to_binary(
        ["{\"profiles\": [",
         lists:join(",", [["{\"file\": ", json_string(File), ", \"totals\": ",
                           case F of
                               %% One profile, named after the file.
                               _ when F =:= brendan_gregg; F =:= pprof ->
                                   json_object([{<<"all">>, integer_to_binary(All)}]);
                               _ -> TotalsJson
                           end, ", \"tolerance\": ", Tolerance(F), "}"]
                          || {F, File} <- Files, F =/= svg] ++ followed_profiles(Dir)),
         "], \"svgs\": [{\"file\": ", json_string(proplists:get_value(svg, Files)),
         ", \"search\": \"fib\", \"share\": ", io_lib:format("~.4f", [100 * Fib / All]), "}, ",
         deep_svg(Dir), "]}"]),
    ManifestFile = filename:join(Dir, "manifest.json"),
    ok = file:write_file(ManifestFile, Manifest),
    {Status, Out} = run(os:find_executable("node"), [filename:join(browser_dir(), "check.mjs"),
                                                     ManifestFile]),
    ct:pal("~s", [Out]),
    ?assertEqual(0, Status),
    ?assertEqual(nomatch, binary:match(Out, <<"FAIL">>)).

%% perf.data, read back by perf itself (perf script: the periods of each
%% process add up to its folded total, to the microsecond; perf report: the
%% Erlang names) and by hotspot's own parser. Skipped, saying why, where
%% perf cannot run.
perf_data_in_perf_and_hotspot(Config) ->
    Dir = ?config(priv_dir, Config),
    Archive = filename:join(Dir, "perf_data.eftrace"),
    {ok, Folded} = eflambe:apply({?W, parent, [21]}, [{return, flamegraph}, {archive, Archive}]),
    Totals = lists:foldl(fun({[P | _], N}, M) -> maps:update_with(P, fun(X) -> X + N end, N, M) end,
                         #{}, eflambe_test_util:parse(Folded)),
    {ok, File} = eflambe:replay(Archive, [{output_format, perf_data}, {output_directory, Dir}]),
    ?assertEqual(".perf.data", lists:nthtail(length(File) - 10, File)),
    ?assert(filelib:is_regular(File ++ ".syms")),
    %% eflambe-fold writes the same file.
    Cli = filename:join(code:priv_dir(eflambe), "eflambe-fold"),
    CliOut = filename:join(Dir, "cli.perf.data"),
    {0, _} = run(Cli, [Archive, "--format", "perf_data", "-o", CliOut]),
    {2, NoFile} = run(Cli, [Archive, "--format", "perf_data"]),
    ?assertNotEqual(nomatch, binary:match(NoFile, <<"-o FILE">>)),
    case os:find_executable("perf") of
        false ->
            {skip, "perf is not installed (Debian: linux-perf)"};
        Perf ->
            case run(Perf, ["script", "-i", File, "-F", "comm,period", "--hide-call-graph"]) of
                {0, Script} ->
                    Periods = lists:foldl(
                                fun(Line, M) ->
                                        case string:lexemes(Line, " \t") of
                                            [Comm, N] -> maps:update_with(Comm, fun(X) -> X + binary_to_integer(N) end,
                                                                          binary_to_integer(N), M);
                                            _ -> M
                                        end
                                end, #{}, binary:split(Script, <<"\n">>, [global, trim_all])),
                    ct:pal("perf script totals ~p~nfolded totals ~p", [Periods, Totals]),
                    ?assertEqual(Totals, Periods),
                    {0, Report} = run(Perf, ["report", "--stdio", "-i", CliOut, "--sort", "sym"]),
                    ?assertNotEqual(nomatch, binary:match(Report, <<"[.] eflambe_workload:fib/1">>)),
                    moved_with_build_id(Perf, Dir, CliOut),
                    hotspot_reads(File);
                {Status, Out} ->
                    {skip, io_lib:format("perf script cannot run here (~p): ~s", [Status, Out])}
            end
    end.

%% The two files moved elsewhere (their first place gone): perf finds the
%% symbols by the build id the two files share, once its cache has them
%% (perf buildid-cache --add; a cache of the test's own here, not the
%% user's ~/.debug).
moved_with_build_id(Perf, Dir, File) ->
    Moved = filename:join([Dir, "moved", "calls.perf.data"]),
    ok = filelib:ensure_dir(Moved),
    ok = file:rename(File, Moved),
    ok = file:rename(File ++ ".syms", Moved ++ ".syms"),
    Cache = ["--buildid-dir", filename:join(Dir, "buildid-cache")],
    Report = fun() ->
                     {0, R} = run(Perf, Cache ++ ["report", "--stdio", "-i", Moved, "--sort", "sym"]),
                     binary:match(R, <<"[.] eflambe_workload:fib/1">>) =/= nomatch
             end,
    ?assertNot(Report()),
    {0, _} = run(Perf, Cache ++ ["buildid-cache", "--add", Moved ++ ".syms"]),
    ?assert(Report()).

%% hotspot's parser (the program hotspot runs on a perf.data file) resolves
%% the names through the file of symbols.
hotspot_reads(File) ->
    Parsers = filelib:wildcard("/usr/lib/*/libexec/hotspot-perfparser"),
    case Parsers of
        [] ->
            {comment, "hotspot is not installed: its parser not run"};
        [Parser | _] ->
            Out = File ++ ".b2qt",
            {0, _} = run(Parser, ["--input", File, "--output", Out]),
            {ok, Stream} = file:read_file(Out),
            ?assertNotEqual(nomatch, binary:match(Stream, <<"eflambe_workload:fib/1">>)),
            hotspot_opens(File)
    end.

%% hotspot itself, without a display, for 15 seconds: it reads the file to
%% its end and takes every sample (its parser knew no event for samples
%% without an attribute id: "Unexpected attribute id").
hotspot_opens(File) ->
    case {os:find_executable("hotspot"), os:find_executable("timeout")} of
        {Hotspot, Timeout} when is_list(Hotspot), is_list(Timeout) ->
            {_, Out} = eflambe_test_util:run(Timeout, ["15", Hotspot, File],
                                             [{env, [{"QT_QPA_PLATFORM", "offscreen"}]}]),
            ct:pal("~s", [Out]),
            ?assertNotEqual(nomatch, binary:match(Out, <<"FINISHED_ROUND">>)),
            ?assertEqual(nomatch, binary:match(Out, <<"Unexpected attribute">>)),
            ok;
        _ ->
            {comment, "hotspot is not installed: not opened"}
    end.

%% perf.data goes to a file, once per run: what cannot be is refused first.
perf_data_files_only(Config) ->
    ?assertMatch({error, {output_format, perf_data, _}},
                 eflambe:apply({?W, fib, [5]}, [{output_format, perf_data}, {return, flamegraph}])),
    ?assertMatch({error, {output_format, perf_data, _}},
                 eflambe:capture({?W, fib, 1}, 1, [{output_format, perf_data}, {timeout, 10},
                                                   {return, flamegraph}])),
    %% A capture, and the replay of its archive: a file per call.
    Dir = ?config(priv_dir, Config),
    Archive = filename:join(Dir, "calls.eftrace"),
    Capture = eflambe_test_util:async_capture({?W, fib, 1}, 2,
                                              [{output_format, perf_data}, {archive, Archive},
                                               {output_directory, Dir}]),
    _ = [?W:fib(N) || N <- [10, 11]],
    {ok, Captured} = Capture(),
    {ok, Replayed} = eflambe:replay(Archive, [{output_format, perf_data}, {output_directory, Dir}]),
    [begin
         ?assertEqual(2, length(Files)),
         [?assert(filelib:is_regular(F) andalso filelib:is_regular(F ++ ".syms")) || F <- Files]
     end || Files <- [Captured, Replayed]],
    ?assertMatch({error, {needs_a_file, perf_data}},
                 eflambe_tracer:fold(<<"/nonexistent">>, perf_data, false,
                                     #{max_depth => 10, recursion => exact})).

%% A profile that follows a call into a gen_server (eflambe_follow_SUITE):
%% the server's work is in the client's one profile, in every format.
followed_profiles(Dir) ->
    {ok, Server} = eflambe_follow_server:start(none),
    Archive = filename:join(Dir, "follow.eftrace"),
    {ok, Folded} = eflambe:apply({eflambe_follow_server, client, [Server, 50000]},
                                 [{return, flamegraph}, {follow, true}, {archive, Archive}]),
    eflambe_follow_server:stop(Server),
    Lines = eflambe_test_util:parse(Folded),
    All = integer_to_binary(lists:sum([N || {_, N} <- Lines])),
    Client = list_to_binary(pid_to_list(self())),
    [begin
         {ok, File} = eflambe:replay(Archive, [{output_format, F}, {output_directory, Dir}]),
         Totals = case F of
                      brendan_gregg -> json_object([{<<"all">>, All}]);
                      _ -> json_object([{Client, All}])
                  end,
         ["{\"file\": ", json_string(File), ", \"totals\": ", Totals, ", \"tolerance\": ",
          integer_to_binary(length(Lines) div 2 + 1), "}"]
     end || F <- [brendan_gregg, perf, speedscope]].

%% A graph 300 frames deep (about 5,000 pixels), whose root must still be
%% on the first screen when opened on its own.
deep_svg(Dir) ->
    Archive = filename:join(Dir, "deep.eftrace"),
    {ok, Folded} = eflambe:apply({eflambe_shapes, nest, [300]}, [{return, flamegraph}, {archive, Archive}]),
    {ok, Svg} = eflambe:replay(Archive, [{output_format, svg}, {output_directory, Dir}]),
    Lines = eflambe_test_util:parse(Folded),
    All = lists:sum([N || {_, N} <- Lines]),
    Burn = lists:sum([N || {Frames, N} <- Lines, lists:member(<<"eflambe_shapes:burn/1">>, Frames)]),
    %% Each folded line is rounded to the microsecond: 300 lines of a few
    %% microseconds each move the share by up to half a microsecond each.
    ["{\"file\": ", json_string(Svg), ", \"search\": \"burn\", \"share\": ",
     io_lib:format("~.4f", [100 * Burn / All]), ", \"tolerance\": ",
     io_lib:format("~.4f", [0.02 + 100 * length(Lines) / All]), "}"].

%% A flamegraph written to a file is streamed there by the folder: the
%% file holds what {return, flamegraph} gives, in every format.
streamed_files(Config) ->
    Dir = ?config(priv_dir, Config),
    Archive = filename:join(Dir, "streamed.eftrace"),
    {ok, _} = eflambe:apply({?W, two, [14]}, [{return, flamegraph}, {archive, Archive}]),
    [begin
         {ok, Bin} = eflambe:replay(Archive, [{output_format, F}, {return, flamegraph}]),
         {ok, File} = eflambe:replay(Archive, [{output_format, F}, {output_directory, Dir}]),
         ?assertEqual({ok, Bin}, file:read_file(File))
     end || F <- [brendan_gregg, perf, speedscope, svg]].

%% The folder creates its output file: never over one that exists, never
%% through a link, and it leaves nothing when it cannot write.
streaming_never_clobbers(Config) ->
    Dir = ?config(priv_dir, Config),
    Archive = archive("apply.eftrace"),
    Opts = #{max_depth => 1024, recursion => exact},
    Existing = filename:join(Dir, "existing.folded"),
    ok = file:write_file(Existing, <<"keep me">>),
    ?assertEqual({error, {output, eexist}},
                 eflambe_tracer:fold(Archive, brendan_gregg, false, Opts#{output => Existing})),
    ?assertEqual({ok, <<"keep me">>}, file:read_file(Existing)),
    Target = filename:join(Dir, "output-link-target"),
    Link = filename:join(Dir, "link.folded"),
    ok = file:make_symlink(Target, Link),
    ?assertEqual({error, {output, eexist}},
                 eflambe_tracer:fold(Archive, brendan_gregg, false, Opts#{output => Link})),
    ?assertEqual({error, enoent}, file:read_file(Target)),
    Missing = filename:join([Dir, "no_such_dir", "x.folded"]),
    ?assertEqual({error, {output, enoent}},
                 eflambe_tracer:fold(Archive, brendan_gregg, false, Opts#{output => Missing})),
    New = filename:join(Dir, "new.folded"),
    ?assertMatch({ok, {file, New}, #{}},
                 eflambe_tracer:fold(Archive, brendan_gregg, false, Opts#{output => New})),
    ?assertEqual({ok, golden_folded()}, file:read_file(New)),
    %% One file per call: STEM-<n><extension>; one whose name is taken
    %% fails them all, and none is left.
    Taken = filename:join(Dir, "calls"),
    ok = file:write_file(Taken ++ "-1.folded", <<"keep me">>),
    ?assertEqual({error, {output, eexist}},
                 eflambe_tracer:fold(Archive, brendan_gregg, true, Opts#{output => Taken})),
    ?assertEqual({ok, <<"keep me">>}, file:read_file(Taken ++ "-1.folded")),
    Stem = filename:join(Dir, "calls2"),
    ?assertMatch({ok, [#{data := {file, 1}}], #{}},
                 eflambe_tracer:fold(Archive, brendan_gregg, true, Opts#{output => Stem})),
    ?assertMatch({ok, <<_, _/binary>>}, file:read_file(Stem ++ "-1.folded")).

golden_folded() ->
    {ok, Bin} = file:read_file(archive("apply.folded")),
    Bin.

json_string(S) ->
    [$", string:replace(unicode:characters_to_binary(S), "\"", "\\\"", all), $"].

json_object(Pairs) ->
    ["{", lists:join(", ", [[json_string(K), ": ", V] || {K, V} <- Pairs]), "}"].

%% pprof, read by pprof itself (go tool pprof, Debian's golang-go): each
%% function's flat time equals the folded output's of the same archive (its
%% lines are rounded to the microsecond one by one), the process and the
%% node are labels, the three sample types are there; apply, capture and
%% sample write it too. Skipped, saying why, where go is not installed.
pprof_in_go_tool(Config) ->
    case os:find_executable("go") of
        false -> {skip, "go tool pprof: go (Debian's golang-go) is not installed"};
        Go -> pprof_in_go_tool(Go, ?config(priv_dir, Config))
    end.

pprof_in_go_tool(Go, Dir) ->
    Archive = filename:join(Dir, "pprof.eftrace"),
    %% A registered caller: its name is a label too.
    true = register(eflambe_pprof_caller, self()),
    {ok, Folded} = try eflambe:apply({?W, parent, [21]}, [{return, flamegraph}, {archive, Archive}])
                   after unregister(eflambe_pprof_caller)
                   end,
    Flat = lists:foldl(fun({Frames, N}, M) ->
                               maps:update_with(lists:last(Frames), fun({X, C}) -> {X + N, C + 1} end,
                                                {N, 1}, M)
                       end, #{}, eflambe_test_util:parse(Folded)),
    {ok, File} = eflambe:replay(Archive, [{output_format, pprof}, {output_directory, Dir}]),
    ?assertEqual(".pb.gz", lists:nthtail(length(File) - 6, File)),
    Top = go_pprof_top(Go, File, []),
    ct:pal("go tool pprof -top: ~p functions, folded: ~p", [map_size(Top), map_size(Flat)]),
    [?assert(abs(maps:get(F, Top, 0) / 1000 - Us) =< Count, {F, maps:get(F, Top, 0), Us})
     || {F, {Us, Count}} <- maps:to_list(Flat)],
    ?assert(maps:is_key(<<"eflambe_workload:fib/1">>, Top)),
    %% The on-CPU part: no sleep in it.
    Cpu = go_pprof_top(Go, File, ["-sample_index=cpu"]),
    ?assertEqual(0, maps:get(<<"sleep">>, Cpu, 0)),
    ?assertEqual(maps:get(<<"eflambe_workload:fib/1">>, Top), maps:get(<<"eflambe_workload:fib/1">>, Cpu)),
    %% Where fib is: its source file and the line its first clause is on.
    Source = proplists:get_value(source, ?W:module_info(compile)),
    {ok, Text} = file:read_file(Source),
    Line = length(binary:split(hd(binary:split(Text, <<"\nfib(0) -> 0;">>)), <<"\n">>, [global])) + 1,
    {0, Raw} = run(Go, ["tool", "pprof", "-raw", File]),
    ?assertMatch({_, _}, binary:match(Raw, iolist_to_binary(["eflambe_workload:fib/1 ", Source, ":",
                                                              integer_to_list(Line), " s=",
                                                              integer_to_list(Line)]))),
    {0, Traces} = run(Go, ["tool", "pprof", "-traces", File]),
    Me = list_to_binary(pid_to_list(self())),
    ?assertMatch({_, _}, binary:match(Traces, <<"process:  ", Me/binary>>)),
    ?assertMatch({_, _}, binary:match(Traces, <<"node:  ", (atom_to_binary(node()))/binary>>)),
    ?assertMatch({_, _}, binary:match(Traces, <<"process_name:  eflambe_pprof_caller">>)),
    %% apply and eflambe-fold write the same; capture and sample too.
    {ok, Applied} = eflambe:apply({?W, fib, [17]}, [{output_format, pprof}, {return, flamegraph}]),
    AppliedFile = filename:join(Dir, "applied.pb.gz"),
    ok = file:write_file(AppliedFile, Applied),
    ?assert(maps:is_key(<<"eflambe_workload:fib/1">>, go_pprof_top(Go, AppliedFile, []))),
    %% Its calls: naive fib(17) calls fib 2 * fib(18) - 1 times.
    ?assertEqual(5167, maps:get(<<"eflambe_workload:fib/1">>,
                                go_pprof_top(Go, AppliedFile, ["-sample_index=calls"]))),
    Cli = filename:join(code:priv_dir(eflambe), "eflambe-fold"),
    CliOut = filename:join(Dir, "cli.pb.gz"),
    {0, _} = run(Cli, [Archive, "--format", "pprof", "-o", CliOut]),
    ?assertEqual(Top, go_pprof_top(Go, CliOut, [])),
    Wait = eflambe_test_util:async_capture({?W, fib, 1}, 1, [{output_format, pprof},
                                                            {output_directory, Dir}]),
    _ = ?W:fib(16),
    {ok, [Captured]} = Wait(),
    ?assert(maps:is_key(<<"eflambe_workload:fib/1">>, go_pprof_top(Go, Captured, []))),
    Busy = spawn(fun Loop() -> _ = ?W:fib(18), Loop() end),
    try
        {ok, Sampled} = eflambe:sample([{duration, 300}, {output_format, pprof},
                                        {output_directory, Dir}]),
        ?assert(maps:is_key(<<"eflambe_workload:fib/1">>, go_pprof_top(Go, Sampled, [])))
    after
        exit(Busy, kill)
    end.

%% Three processes spawned about 10 ms apart: in the speedscope and perf
%% outputs each starts where the run's one clock has it start, their
%% starts as far apart as the processes' own clocks say (within 1 ms).
one_clock_per_run(_Config) ->
    Self = self(),
    Child = fun() ->
                    Self ! {started, self(), erlang:monotonic_time(microsecond)},
                    ?W:fib(14)
            end,
    Run = fun() ->
                  Kids = [begin
                              timer:sleep(10),
                              spawn_monitor(Child)
                          end || _ <- [1, 2, 3]],
                  [receive {'DOWN', Ref, process, _, _} -> ok end || {_, Ref} <- Kids]
          end,
    Archive = filename:join(?config(priv_dir, _Config), "staggered.eftrace"),
    {ok, _} = eflambe:apply({Run, []}, [{return, flamegraph}, {archive, Archive}]),
    Truth = maps:from_list([receive {started, P, T} -> {list_to_binary(pid_to_list(P)), T} end
                            || _ <- [1, 2, 3]]),
    {ok, Json} = eflambe:replay(Archive, [{output_format, speedscope}, {return, flamegraph}]),
    {match, Profiles} = re:run(Json, "\"name\":\"([^\"]*)\",\"unit\":\"microseconds\",\"startValue\":([0-9.]+)",
                               [global, {capture, all_but_first, binary}]),
    Speedscope = maps:from_list([{Name, binary_to_float(Start)} || [Name, Start] <- Profiles]),
    {ok, Perf} = eflambe:replay(Archive, [{output_format, perf}, {return, flamegraph}]),
    {match, Samples} = re:run(Perf, "^(<[0-9.]+>) [0-9]+/[0-9]+ ([0-9.]+): ", [multiline, global,
                                                                           {capture, all_but_first, binary}]),
    PerfStart = lists:foldl(fun([Name, T], M) ->
                                    Us = binary_to_float(T) * 1.0e6,
                                    maps:update_with(Name, fun(X) -> min(X, Us) end, Us, M)
                            end, #{}, Samples),
    [First | _] = Kids = lists:sort(fun(A, B) -> maps:get(A, Truth) =< maps:get(B, Truth) end,
                                    maps:keys(Truth)),
    ct:pal("truth ~p~nspeedscope ~p~nperf ~p", [Truth, Speedscope, PerfStart]),
    [begin
         Want = maps:get(K, Truth) - maps:get(First, Truth),
         ?assert(abs(maps:get(K, Speedscope) - maps:get(First, Speedscope) - Want) =< 1000),
         ?assert(abs(maps:get(K, PerfStart) - maps:get(First, PerfStart) - Want) =< 1000)
     end || K <- Kids],
    %% And after the caller's start, which is the run's.
    ?assert(maps:get(First, Speedscope) >= 10000 - 1000).

%% Function -> flat nanoseconds (negative in a diff), as go tool pprof -top
%% prints them.
go_pprof_top(Go, File, Args) ->
    {0, Out} = run(Go, ["tool", "pprof", "-top", "-nodecount=1000000", "-nodefraction=0",
                        "-edgefraction=0", "-unit=ns" | Args] ++ [File]),
    {match, Rows} = re:run(Out, "^\\s*(-?[0-9]+)(?:ns)?\\s+\\S+%\\s+\\S+%\\s+-?[0-9]+(?:ns)?\\s+\\S+%\\s+(.+)$",
                           [multiline, global, {capture, all_but_first, binary}]),
    maps:from_list([{Name, binary_to_integer(Ns)} || [Ns, Name] <- Rows]).

run(Exe, Args) ->
    eflambe_test_util:run(Exe, Args).

run(Exe, Args, PortOpts) ->
    eflambe_test_util:run(Exe, Args, PortOpts).
