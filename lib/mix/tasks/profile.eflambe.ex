defmodule Mix.Tasks.Profile.Eflambe do
  use Mix.Task

  @shortdoc "Profiles the given file or expression with eflambe and writes a flamegraph"

  @moduledoc """
  Profiles the given file or expression with eflambe, as `mix profile.eprof`
  and `mix profile.fprof` do, and writes a flamegraph of it.

      mix profile.eflambe -e "MyApp.work(42)"
      mix profile.eflambe my_script.exs --format svg --output-dir /tmp --open speedscope
      mix profile.eflambe -e "MyApp.run()" --capture MyApp.Repo.query/2 --count 3

  It prints where the file went and the functions with the most time on
  top of the stack.

  ## Options

    * `-e`, `--eval` - the code to profile (else a file of code)
    * `--format` - `brendan_gregg` (folded stacks, the default), `perf`,
      `speedscope`, `svg` or `perf_data` (for hotspot and `perf report`; not
      with `--capture`)
    * `--output-dir` - where the file goes (default: the current directory)
    * `--open` - open the file with this program once written (`speedscope`, ...)
    * `--capture` - `Module.function/arity` (or `:erlang_module.function/arity`):
      profile the next calls of that function, by any process, made while
      the code runs, instead of the code itself
    * `--count` - with `--capture`, how many calls (default 1); one file each
    * `--follow` - follow gen_server and gen_statem calls into the servers
    * `--top` - how many functions to print (default 10)
    * `--no-warmup` - do not run the code once before profiling it
    * `--no-compile`, `--no-deps-check`, `--no-archives-check`, `--no-start`,
      `--no-elixir-version-check` - as for `mix run`
  """

  @switches [
    eval: :string,
    format: :string,
    output_dir: :string,
    open: :string,
    capture: :string,
    count: :integer,
    follow: :boolean,
    top: :integer,
    warmup: :boolean,
    compile: :boolean,
    deps_check: :boolean,
    archives_check: :boolean,
    start: :boolean,
    elixir_version_check: :boolean
  ]

  @aliases [e: :eval]

  @impl true
  def run(args) do
    {opts, rest} = OptionParser.parse_head!(args, aliases: @aliases, strict: @switches)

    code =
      case {opts[:eval], rest} do
        {nil, [file | _]} -> File.read!(file)
        {nil, []} -> Mix.raise("mix profile.eflambe: give the code with -e EXPR, or a file")
        {expr, _} -> expr
      end

    start_args =
      for {flag, false} <- opts,
          flag in [:compile, :deps_check, :archives_check, :start, :elixir_version_check],
          do: "--no-" <> String.replace(Atom.to_string(flag), "_", "-")

    Mix.Task.run("app.start", start_args)
    profile(code, opts)
  end

  defp profile(code, opts) do
    {fun, _} = Code.eval_string("fn ->\n" <> code <> "\nend", [], file: "profile.eflambe")
    dir = Path.expand(opts[:output_dir] || ".")
    format = output_format(opts[:format] || "brendan_gregg")
    archive = Path.join(System.tmp_dir!(), "eflambe-mix-#{System.unique_integer([:positive])}.eftrace")

    common =
      [output_format: format, output_directory: String.to_charlist(dir), return: :filename] ++
        if(opts[:open], do: [open: String.to_charlist(opts[:open])], else: []) ++
        if(opts[:follow], do: [follow: true], else: [])

    try do
      {files, archive_for_summary} =
        case opts[:capture] do
          nil -> {apply_profile(fun, opts, common, archive), archive}
          mfa -> {capture_profile(fun, parse_mfa(mfa), opts[:count] || 1, common, archive), archive}
        end

      Enum.each(files, &Mix.shell().info("Flamegraph (#{format}): #{&1}"))
      summary(archive_for_summary, opts[:top] || 10)
    after
      File.rm(archive)
    end
  end

  defp apply_profile(fun, opts, common, archive) do
    if Keyword.get(opts, :warmup, true), do: fun.()

    case :eflambe.apply(fun, [{:archive, String.to_charlist(archive)} | common]) do
      {:ok, file} -> [List.to_string(file)]
      {:error, reason} -> Mix.raise("eflambe failed: #{inspect(reason)}")
    end
  end

  # The capture waits in a task while the code runs; what the code did not
  # call is not waited for.
  defp capture_profile(fun, mfa, count, common, archive) do
    task = Task.async(fn -> :eflambe.capture(mfa, count, [{:archive, String.to_charlist(archive)} | common]) end)

    result =
      case wait_armed(task, mfa, 5000) do
        :armed ->
          fun.()

          case Task.yield(task, 1000) do
            {:ok, result} ->
              result

            nil ->
              :eflambe.stop()
              Task.await(task, :infinity)
          end

        {:ended, result} ->
          result
      end

    case result do
      {:ok, files} -> Enum.map(files, &List.to_string/1)
      {:error, reason} -> Mix.raise("eflambe failed: #{inspect(reason)}")
    end
  end

  # Until the capture is armed, or has ended (an error: the function does
  # not exist, another run is in progress...).
  defp wait_armed(_task, _mfa, waited) when waited <= 0,
    do: Mix.raise("eflambe: the capture did not start")

  defp wait_armed(task, mfa, waited) do
    case :erlang.trace_info(mfa, :meta) do
      {:meta, {:eflambe_tracer, _}} ->
        :armed

      _ ->
        case Task.yield(task, 5) do
          {:ok, result} -> {:ended, result}
          nil -> wait_armed(task, mfa, waited - 5)
        end
    end
  end

  defp output_format(name) do
    formats = ~w(brendan_gregg perf speedscope svg perf_data)

    if name in formats,
      do: String.to_atom(name),
      else: Mix.raise("--format: one of #{Enum.join(formats, ", ")}, not #{name}")
  end

  # Module.function/arity or :erlang_module.function/arity
  defp parse_mfa(text) do
    with [_, mod, fun, arity] <- Regex.run(~r{^(.+)\.([^./]+)/(\d+)$}, text) do
      module =
        case mod do
          ":" <> erl -> String.to_atom(erl)
          elixir -> Module.concat([elixir])
        end

      {module, String.to_atom(fun), String.to_integer(arity)}
    else
      _ -> Mix.raise("--capture: Module.function/arity, not #{text}")
    end
  end

  # The functions with the most time on top of the stack (running, not
  # sleeping), from the run's folded stacks.
  defp summary(archive, top) do
    case :eflambe.replay(String.to_charlist(archive), return: :flamegraph) do
      {:ok, folded} ->
        # A capture's archive: one flamegraph per call.
        folded = IO.iodata_to_binary(folded)

        lines =
          for line <- String.split(folded, "\n", trim: true),
              [_, stack, n] <- [Regex.run(~r/^(.*) (\d+)$/, line)],
              do: {String.split(stack, ";"), String.to_integer(n)}

        total = lines |> Enum.map(&elem(&1, 1)) |> Enum.sum()

        on_cpu =
          lines
          |> Enum.reject(fn {frames, _} -> List.last(frames) in ["sleep", "runnable", "[os preempted]"] end)
          |> Enum.reduce(%{}, fn {frames, n}, acc -> Map.update(acc, List.last(frames), n, &(&1 + n)) end)

        Mix.shell().info("Profiled: #{Float.round(total / 1000, 1)} ms in all stacks")
        Mix.shell().info("Functions with the most time on top of the stack, running:")

        on_cpu
        |> Enum.sort_by(fn {_, n} -> -n end)
        |> Enum.take(top)
        |> Enum.each(fn {f, n} ->
          Mix.shell().info("  #{:io_lib.format(~c"~8.1f", [n / 1000])} ms  #{f}")
        end)

      {:error, reason} ->
        Mix.shell().error("eflambe: no summary: #{inspect(reason)}")
    end
  end
end
