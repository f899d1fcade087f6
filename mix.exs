# Lets an Elixir project depend on eflambe by path or git:
#
#     {:eflambe, path: "../eflambe"}
#     {:eflambe, git: "https://example.org/eflambe.git"}
#
# The C part (the NIF and eflambe-fold) is built by c_src/Makefile, the
# Erlang part by Mix's Erlang compiler, as rebar3 does it with rebar.config.
# It needs the same Debian packages (scripts/deps.sh lists them). lib/ holds
# what Elixir users get besides :eflambe: EflambeLive (SVG flamegraphs for
# Livebook) and `mix profile.eflambe`.
defmodule Eflambe.MixProject do
  use Mix.Project

  def project do
    [
      app: :eflambe,
      version: "0.1.0",
      language: :erlang,
      erlc_paths: ["src"],
      # EflambeLive and the profile.eflambe Mix task.
      elixirc_paths: ["lib"],
      erlc_options: [:debug_info],
      compilers: [:eflambe_c | Mix.compilers()],
      # `mix profile.eflambe` runs under Mix, which a release of an
      # application that depends on eflambe does not hold: no runtime
      # dependency on :mix (Elixir 1.15 and later warn without this).
      xref: [exclude: [Mix, Mix.Task]],
      deps: []
    ]
  end

  def application do
    [extra_applications: [:kernel, :stdlib, :crypto]]
  end
end

defmodule Mix.Tasks.Compile.EflambeC do
  @moduledoc "Builds eflambe's NIF and CLI with make (c_src/Makefile)."
  use Mix.Task.Compiler

  @impl true
  def run(_args) do
    case System.cmd("make", ["-C", "c_src"], stderr_to_stdout: true) do
      {_output, 0} ->
        {:ok, []}

      {output, status} ->
        Mix.shell().error(output)
        Mix.raise("eflambe: make -C c_src failed with status #{status}")
    end
  end
end
