defmodule EflambeLive do
  @moduledoc """
  eflambe for Livebook and IEx: the flamegraph of a call as an interactive
  SVG, ready to render.

  In a Livebook cell (with Kino), one line shows it:

      EflambeLive.apply(fn -> MyApp.work(42) end) |> Kino.HTML.new()

  The SVG is self-contained (its script and styles are inside it) and
  works inserted into a page with `innerHTML`, as a notebook does: click a
  frame to zoom, search with a regular expression, hover for details.

  `apply/1,2` profiles a call you make; `capture/1,2,3` the next calls of a
  function made by any process on the node. Options are eflambe's (see
  `:eflambe`), but for `:output_format` and `:return`, which are set here.
  A failure raises `EflambeLive.Error` with eflambe's reason.
  """

  defmodule Error do
    defexception [:reason]

    @impl true
    def message(%{reason: reason}), do: "eflambe failed: #{inspect(reason)}"
  end

  @doc """
  Profiles `fun_spec` (a fun of no arguments, `{fun, args}` or
  `{module, function, args}`) and returns the flamegraph as an SVG binary.
  The call's own value is not returned.
  """
  @spec apply(function() | {function(), list()} | {module(), atom(), list()}, keyword()) :: binary()
  def apply(fun_spec, options \\ []) do
    case :eflambe.apply(fun_spec, svg_options(options)) do
      {:ok, svg} -> svg
      {:error, reason} -> raise Error, reason: reason
    end
  end

  @doc """
  Waits for the next `count` calls of `{module, function, arity}` made by
  any process on the node and returns their flamegraphs, one SVG each, in
  the order the calls ended.
  """
  @spec capture({module(), atom(), arity()}, pos_integer(), keyword()) :: [binary()]
  def capture(mfa, count \\ 1, options \\ []) do
    case :eflambe.capture(mfa, count, svg_options(options)) do
      {:ok, svgs} -> svgs
      {:error, reason} -> raise Error, reason: reason
    end
  end

  defp svg_options(options) do
    Keyword.merge(options, output_format: :svg, return: :flamegraph)
  end
end
