%% eflambe from Elixir: a Mix project depends on eflambe by path (its
%% mix.exs builds it), and calls it with keyword lists.
-module(eflambe_elixir_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

all() ->
    [mix_project].

root() ->
    Src = proplists:get_value(source, ?MODULE:module_info(compile)),
    filename:dirname(filename:dirname(Src)).

mix_project(Config) ->
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
    {0, Compiled} = run(Mix, ["compile"], Dir),
    ct:pal("~s", [Compiled]),
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

run(Exe, Args, Dir) ->
    eflambe_test_util:run(Exe, Args, [{cd, Dir}, {env, [{"MIX_ENV", "dev"}]}]).
