%% eflambe from Elixir: a Mix project depends on eflambe by path (its
%% mix.exs builds it), and calls it with keyword lists.
-module(eflambe_elixir_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

all() ->
    [mix_project, mix_profile_task, livebook_svg].

root() ->
    Src = proplists:get_value(source, ?MODULE:module_info(compile)),
    filename:dirname(filename:dirname(Src)).

mix_project(Config) ->
    {Mix, Dir} = demo_project(Config),
    Script =
        "{:ok, folded} = :eflambe.apply({Demo, :work, [15]}, return: :flamegraph)\n"
        "IO.puts(\"apply: \" <> (folded |> String.split(\"\\n\") |> Enum.at(1)))\n"
        "{:ok, svg} = :eflambe.apply({Demo, :work, [12]}, output_format: :svg, return: :flamegraph)\n"
        "IO.puts(\"svg: \" <> binary_part(svg, 0, 5))\n"
        "task = Task.async(fn -> :eflambe.capture({Demo, :fib, 1}, 2, return: :flamegraph, timeout: 20_000) end)\n"
        "Process.sleep(500)\n"
        "for n <- [12, 13], do: spawn(fn -> Demo.fib(n) end)\n"
        "{:ok, calls} = Task.await(task, 30_000)\n"
        "IO.puts(\"capture: #{length(calls)} \" <> (calls |> hd |> String.split(\";\") |> Enum.at(1)))\n"
        "IO.inspect(:eflambe.apply({Demo, :work, [5]}, colour: :red), label: \"error\")\n",
    {0, Out} = run(Mix, ["run", "-e", Script], Dir),
    ct:pal("~s", [Out]),
    ?assertMatch({match, _}, re:run(Out, <<"apply: <0\\.\\d+\\.0>;Demo\\.work/1;">>)),
    ?assertNotEqual(nomatch, binary:match(Out, <<"svg: <?xml">>)),
    ?assertMatch({match, _}, re:run(Out, <<"capture: 2 Demo\\.fib/1 ">>)),
    ?assertNotEqual(nomatch, binary:match(Out, <<"error: {:error, {:unknown_option, {:colour, :red}}}">>)).

%% A Mix project like mix_project's, compiled: its directory.
demo_project(Config) ->
    Mix = os:find_executable("mix"),
    ?assertNotEqual(false, Mix),
    Dir = filename:join(?config(priv_dir, Config), "demo"),
    ok = filelib:ensure_dir(filename:join([Dir, "lib", "x"])),
    ok = file:write_file(filename:join(Dir, "mix.exs"),
        ["defmodule Demo.MixProject do\n"
         "  use Mix.Project\n"
         "  def project, do: [app: :demo, version: \"0.1.0\", deps: [{:eflambe, path: \"", root(), "\"}]]\n"
         "end\n"]),
    ok = file:write_file(filename:join([Dir, "lib", "demo.ex"]),
        "defmodule Demo do\n"
        "  def fib(0), do: 0\n"
        "  def fib(1), do: 1\n"
        "  def fib(n), do: fib(n - 1) + fib(n - 2)\n"
        "  def work(n), do: Enum.map(1..3, fn _ -> fib(n) end) |> Enum.sum()\n"
        "end\n"),
    {0, _} = run(Mix, ["compile"], Dir),
    {Mix, Dir}.

%% mix profile.eflambe, as an Elixir user runs it: the expression, then a
%% capture; each writes a file the folded parser reads, with the work in
%% it, and prints where it went and the top functions.
mix_profile_task(Config) ->
    {Mix, Dir} = demo_project(Config),
    Out = filename:join(Dir, "out"),
    ok = file:make_dir(Out),
    {0, Printed} = run(Mix, ["profile.eflambe", "-e", "Demo.work(18)", "--output-dir", Out], Dir),
    ct:pal("~s", [Printed]),
    {match, [File]} = re:run(Printed, <<"Flamegraph \\(brendan_gregg\\): (\\S+)">>,
                             [{capture, all_but_first, binary}]),
    {ok, Folded} = file:read_file(File),
    Lines = eflambe_test_util:parse(Folded),
    Fib = lists:sum([N || {Frames, N} <- Lines, lists:member(<<"Demo.fib/1">>, Frames)]),
    ?assert(Fib > 0.5 * lists:sum([N || {_, N} <- Lines])),
    ?assertMatch({match, _}, re:run(Printed, <<"\\d+\\.\\d ms  Demo\\.fib/1">>)),
    %% --capture: the next call of Demo.work/1 by another process, as SVG.
    {0, Captured} = run(Mix, ["profile.eflambe", "-e",
                              "Task.async(fn -> Demo.work(15) end) |> Task.await()",
                              "--capture", "Demo.work/1", "--format", "svg",
                              "--output-dir", Out], Dir),
    ct:pal("~s", [Captured]),
    {match, [Svg]} = re:run(Captured, <<"Flamegraph \\(svg\\): (\\S+)">>,
                            [{capture, all_but_first, binary}]),
    {ok, <<"<?xml", _/binary>>} = file:read_file(Svg),
    %% A wrong option says what is wrong.
    {Status, Bad} = run(Mix, ["profile.eflambe", "-e", "Demo.work(5)", "--format", "png"], Dir),
    ?assertNotEqual(0, Status),
    ?assertNotEqual(nomatch, binary:match(Bad, <<"--format: one of">>)).

%% EflambeLive.apply returns an SVG; inserted with innerHTML in a page, as
%% a notebook cell is, it works in Chromium (zoom, search, details), and the
%% share the search shows is the folded profile's. (Kino itself cannot be
%% installed here: hex.pm is out of reach.)
livebook_svg(Config) ->
    {Mix, Dir} = demo_project(Config),
    Svg = filename:join(Dir, "cell.svg"),
    Archive = filename:join(Dir, "cell.eftrace"),
    Script2 = ["svg = EflambeLive.apply(fn -> Demo.work(20) end, archive: '", Archive, "')\n"
               "File.write!(\"", Svg, "\", svg)\n"
               "task = Task.async(fn -> EflambeLive.capture({Demo, :fib, 1}, 1, timeout: 20_000) end)\n"
               "Process.sleep(500)\n"
               "spawn(fn -> Demo.fib(12) end)\n"
               "[captured] = Task.await(task, 30_000)\n"
               "IO.puts(\"captured: \" <> binary_part(captured, 0, 5))\n"
               "try do\n"
               "  EflambeLive.apply(fn -> :ok end, colour: :red)\n"
               "rescue\n"
               "  e in EflambeLive.Error -> IO.puts(\"raised: \" <> Exception.message(e))\n"
               "end\n"],
    {0, Out} = run(Mix, ["run", "-e", iolist_to_binary(Script2)], Dir),
    ct:pal("~s", [Out]),
    ?assertNotEqual(nomatch, binary:match(Out, <<"captured: <?xml">>)),
    ?assertNotEqual(nomatch, binary:match(Out, <<"raised: eflambe failed: {:unknown_option, {:colour, :red}}">>)),
    {ok, Folded} = eflambe:replay(Archive, [{return, flamegraph}]),
    Lines = eflambe_test_util:parse(Folded),
    All = lists:sum([N || {_, N} <- Lines]),
    Fib = lists:sum([N || {Frames, N} <- Lines, lists:member(<<"Demo.fib/1">>, Frames)]),
    Manifest = filename:join(Dir, "manifest.json"),
    ok = file:write_file(Manifest,
                         ["{\"svgs\": [{\"file\": ", eflambe_formats_SUITE:json_string(Svg),
                          ", \"search\": \"Demo\\\\.fib\", \"share\": ",
                          io_lib:format("~.4f", [100 * Fib / All]),
                          %% Each folded line is rounded to the microsecond.
                          ", \"tolerance\": ",
                          io_lib:format("~.4f", [0.02 + 100 * length(Lines) / All]), "}]}"]),
    {Status, Checked} = eflambe_test_util:run(os:find_executable("node"),
                                              [filename:join(eflambe_formats_SUITE:browser_dir(),
                                                             "check.mjs"), Manifest]),
    ct:pal("~s", [Checked]),
    ?assertEqual(0, Status),
    ?assertNotEqual(nomatch, binary:match(Checked, <<"inserted with innerHTML">>)).

run(Exe, Args, Dir) ->
    eflambe_test_util:run(Exe, Args, [{cd, Dir}, {env, [{"MIX_ENV", "dev"}]}]).
