%% eflambe:diff and eflambe-fold --diff: two captured calls that differ by
%% known amounts (eflambe_workload:varied/1: work_a twice and no work_b in
%% the second), compared in every diff format, the SVG driven in Chromium.
-module(eflambe_diff_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(W, eflambe_workload).

all() ->
    [changed_call, itself_unchanged, svg_in_chromium, pprof_diff, cli_same_as_api, folded_files,
     bad_sides].

init_per_suite(Config) ->
    Dir = ?config(priv_dir, Config),
    Archive = filename:join(Dir, "varied.eftrace"),
    %% Work of about 10 ms, warmed up (caches, the CPU's clock) first.
    Bin = binary:copy(<<"abcdefgh">>, 4000000),
    _ = [?W:varied({V, Bin}) || _ <- [1, 2, 3], V <- [base, changed]],
    Wait = eflambe_test_util:async_capture({?W, varied, 1}, 2, [{archive, Archive},
                                                                {return, flamegraph}]),
    _ = ?W:varied({base, Bin}),
    _ = ?W:varied({changed, Bin}),
    {ok, [_, _]} = Wait(),
    [{archive, Archive} | Config].

end_per_suite(_Config) ->
    ok.

browser_dir() ->
    Src = proplists:get_value(source, ?MODULE:module_info(compile)),
    filename:join(filename:dirname(Src), "browser").

%% "stack base new" lines.
parse_diff(Folded) ->
    [begin
         [Rest, New] = string:split(Line, " ", trailing),
         [Stack, Base] = string:split(Rest, " ", trailing),
         {string:split(Stack, ";", all), binary_to_integer(Base), binary_to_integer(New)}
     end || Line <- binary:split(Folded, <<"\n">>, [global, trim_all])].

%% Both sides' time in the stacks through a function.
through(Lines, Function) ->
    lists:foldl(fun({Frames, B, N}, {SB, SN}) ->
                        case lists:member(Function, Frames) of
                            true -> {SB + B, SN + N};
                            false -> {SB, SN}
                        end
                end, {0, 0}, Lines).

diff(Config, Opts) ->
    Archive = ?config(archive, Config),
    {ok, Diff} = eflambe:diff({Archive, 1}, {Archive, 2}, [{return, flamegraph} | Opts]),
    Diff.

%% ---- cases --------------------------------------------------------------

%% The second call against the first: work_a +100% (within 15%), work_b
%% -100%, in the folded diff's two columns.
changed_call(Config) ->
    Lines = parse_diff(diff(Config, [])),
    {A0, A1} = through(Lines, <<"eflambe_workload:work_a/1">>),
    {B0, B1} = through(Lines, <<"eflambe_workload:work_b/1">>),
    ct:pal("work_a ~b -> ~b us, work_b ~b -> ~b us", [A0, A1, B0, B1]),
    ?assert(A0 > 0 andalso B0 > 0),
    ?assert(abs(A1 / A0 - 2) =< 0.3),
    ?assertEqual(0, B1),
    %% Normalized: Base scaled to New's total (to a microsecond a line).
    Normalized = parse_diff(diff(Config, [{normalize, true}])),
    BaseTotal = lists:sum([B || {_, B, _} <- Normalized]),
    NewTotal = lists:sum([N || {_, _, N} <- Normalized]),
    ?assert(abs(BaseTotal - NewTotal) =< length(Normalized)).

%% A profile against itself: every line the same on both sides, every frame
%% of the SVG white.
itself_unchanged(Config) ->
    Archive = ?config(archive, Config),
    {ok, Folded} = eflambe:diff(Archive, Archive, [{return, flamegraph}]),
    Lines = parse_diff(Folded),
    ?assertNotEqual([], Lines),
    ?assertEqual([], [L || {_, B, N} = L <- Lines, B =/= N]),
    {ok, Svg} = eflambe:diff(Archive, Archive, [{return, flamegraph}, {output_format, svg}]),
    {match, Fills} = re:run(Svg, "<rect x=[^>]* fill=\"([^\"]*)\"", [global, {capture, all_but_first, binary}]),
    ?assert(length(Fills) > 3),
    ?assertEqual([<<"rgb(255,255,255)">>], lists:usort(lists:append(Fills))).

%% The SVG in Chromium: frames are coloured by the change of their own
%% time, so the work under work_a (its crc32, where the time is) is red,
%% work_b and its crc32 blue; each hover shows its own times as the folded
%% diff gives them.
svg_in_chromium(Config) ->
    Dir = ?config(priv_dir, Config),
    Lines = parse_diff(diff(Config, [])),
    Own = fun(Path) ->
                  hd([{B, N} || {Frames, B, N} <- Lines, lists:suffix(Path, Frames)])
          end,
    A = <<"eflambe_workload:work_a/1">>,
    B = <<"eflambe_workload:work_b/1">>,
    Crc = <<"erlang:crc32/1">>,
    File = filename:join(Dir, "varied-diff.svg"),
    ok = file:write_file(File, diff(Config, [{output_format, svg}])),
    Frame = fun(Name, Under, Colour, Path) ->
                    {Base, New} = Own(Path),
                    ["{\"name\": \"", Name, "\", \"under\": \"", Under, "\", \"colour\": \"", Colour,
                     "\", \"shows\": \"",
                     io_lib:format("base ~b \xc2\xb5s, new ~b \xc2\xb5s", [Base, New]), "\"}"]
            end,
    Manifest = iolist_to_binary(
                 ["{\"diffs\": [{\"file\": \"", File, "\", \"frames\": [",
                  lists:join(", ", [Frame(Crc, A, "red", [A, Crc]),
                                    Frame(B, "eflambe_workload:varied/1", "blue", [B]),
                                    Frame(Crc, B, "blue", [B, Crc])]),
                  "]}]}"]),
    ManifestFile = filename:join(Dir, "diff-manifest.json"),
    ok = file:write_file(ManifestFile, Manifest),
    {Status, Out} = eflambe_test_util:run(os:find_executable("node"),
                                          [filename:join(browser_dir(), "check.mjs"), ManifestFile]),
    ct:pal("~ts", [Out]),
    ?assertEqual(0, Status),
    ?assertEqual(nomatch, binary:match(Out, <<"FAIL">>)).

%% pprof: New's samples and Base's negated; go tool pprof -top shows work_b
%% gone (negative) and work_a grown. Skipped without go.
pprof_diff(Config) ->
    case os:find_executable("go") of
        false ->
            {skip, "go tool pprof: go (Debian's golang-go) is not installed"};
        Go ->
            File = filename:join(?config(priv_dir, Config), "varied-diff.pb.gz"),
            ok = file:write_file(File, diff(Config, [{output_format, pprof}])),
            {0, Out} = eflambe_test_util:run(Go, ["tool", "pprof", "-top", "-cum", "-nodecount=1000",
                                                  "-unit=ns", File]),
            ct:pal("~s", [Out]),
            {match, Rows} = re:run(Out, "^\\s*-?[0-9]+(?:ns)?\\s+\\S+%\\s+\\S+%\\s+(-?[0-9]+)(?:ns)?\\s+\\S+%\\s+(.+)$",
                                   [multiline, global, {capture, all_but_first, binary}]),
            Cum = maps:from_list([{Name, binary_to_integer(Ns)} || [Ns, Name] <- Rows]),
            %% Each work's time in all: a's grew by about what b's lost.
            A = maps:get(<<"eflambe_workload:work_a/1">>, Cum),
            B = maps:get(<<"eflambe_workload:work_b/1">>, Cum),
            ?assert(A > 0 andalso B < 0),
            ?assert(abs(A + B) < 0.3 * -B)
    end.

%% eflambe-fold --diff writes what eflambe:diff returns.
cli_same_as_api(Config) ->
    Archive = ?config(archive, Config),
    Cli = filename:join(code:priv_dir(eflambe), "eflambe-fold"),
    {0, Out} = eflambe_test_util:run(Cli, ["--diff", Archive, "--base-call", "1", "--call", "2",
                                           Archive]),
    ?assertEqual(diff(Config, []), Out),
    {2, _} = eflambe_test_util:run(Cli, ["--diff", Archive, "--format", "perf", Archive]).

%% Folded files on both sides, as flamegraph.pl's users have them.
folded_files(Config) ->
    Dir = ?config(priv_dir, Config),
    Base = filename:join(Dir, "diff-base.folded"),
    New = filename:join(Dir, "diff-new.folded"),
    ok = file:write_file(Base, <<"p;m:a/0;m:x/0 100\np;m:a/0;m:y/0 50\n">>),
    ok = file:write_file(New, <<"p;m:a/0;m:x/0 300\n">>),
    ?assertEqual({ok, <<"p;m:a/0;m:x/0 100 300\np;m:a/0;m:y/0 50 0\n">>},
                 eflambe:diff(Base, New, [{return, flamegraph}])),
    ?assertEqual({ok, <<"p;m:a/0;m:x/0 200 300\np;m:a/0;m:y/0 100 0\n">>},
                 eflambe:diff(Base, New, [{return, flamegraph}, {normalize, true}])),
    {ok, File} = eflambe:diff(Base, New, [{output_format, svg}, {output_directory, Dir}]),
    ?assertEqual(".svg", filename:extension(File)).

bad_sides(Config) ->
    Archive = ?config(archive, Config),
    Dir = ?config(priv_dir, Config),
    Junk = filename:join(Dir, "diff-junk"),
    ok = file:write_file(Junk, <<"this is not a profile\n">>),
    ?assertEqual({error, {bad_folded, not_folded_stacks}},
                 eflambe:diff(Junk, Archive, [{return, flamegraph}])),
    ?assertEqual({error, {no_such_call, 3, {calls, 2}}},
                 eflambe:diff({Archive, 3}, Archive, [{return, flamegraph}])),
    ?assertMatch({error, {bad_output_format, speedscope, _}},
                 eflambe:diff(Archive, Archive, [{output_format, speedscope}])),
    ?assertMatch({error, {archive, _, _}}, eflambe:diff(filename:join(Dir, "diff-none"), Archive, [])),
    ?assertMatch({error, {bad_normalize, yes, _}}, eflambe:diff(Archive, Archive, [{normalize, yes}])).
