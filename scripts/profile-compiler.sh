#!/usr/bin/env bash
# Profiles the Erlang compiler compiling a module, with eflambe, and writes
# the flamegraph twice: folded stacks, and an interactive SVG for a browser.
# Usage: scripts/profile-compiler.sh [MODULE.erl] [OUTPUT_DIR]
# (defaults: src/eflambe_session.erl, the current directory).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
source_file=$(realpath "${1:-$here/src/eflambe_session.erl}")
out_dir=$(realpath "${2:-.}")

"$here/scripts/deps.sh"
(cd "$here" && rebar3 compile >&2)

erl -noshell -pa "$here/_build/default/lib/eflambe/ebin" -eval '
    [Source, Dir] = init:get_plain_arguments(),
    {ok, Cwd} = file:get_cwd(),
    Relative = fun(F) -> case string:prefix(F, Cwd ++ "/") of
                             nomatch -> F;
                             Rest -> "./" ++ Rest
                         end
               end,
    Archive = filename:join(Dir, ".eflambe-profile-compiler.eftrace"),
    Opts = [{return, filename}, {output_directory, Dir}, {archive, Archive}],
    case eflambe:apply({compile, file, [Source, [binary, return_errors]]}, Opts) of
        {ok, File} ->
            %% The SVG beside the folded file, from the same archive; the
            %% fold says what it took out of the time.
            Svg = filename:rootname(File) ++ ".svg",
            {ok, {file, _}, Info} =
                eflambe_tracer:fold(Archive, svg, false, #{max_depth => 1024, recursion => exact,
                                                           output => Svg}),
            %% The summary comes with the fold: the folded file (tens to
            %% hundreds of MB) is not read back.
            #{compensated_us := Compensated, events := Events, running_us := Running,
              processes := Procs, stacks := Stacks, deepest := Deepest, top := Top} = Info,
            ok = file:delete(Archive),
            io:format("Compiled ~ts under eflambe: ~.1f ms running in ~b processes "
                      "(~.1f ms of tracing cost over ~b events taken out), ~b stacks, "
                      "the deepest ~b functions.~n",
                      [filename:basename(Source), Running / 1000, Procs, Compensated / 1000,
                       Events, Stacks, Deepest]),
            io:format("Functions with the most time on top of the stack, running:~n"),
            [io:format("  ~6.1f ms  ~s~n", [Us / 1000, F]) || {F, Us} <- lists:sublist(Top, 8)],
            io:format("Flamegraph, folded stacks (~.1f MB): ~s~n",
                      [filelib:file_size(File) / 1048576, Relative(File)]),
            io:format("Flamegraph, interactive SVG (~.1f MB; open it in a web browser): ~s~n",
                      [filelib:file_size(Svg) / 1048576, Relative(Svg)]),
            halt(0);
        Error ->
            io:format(standard_error, "eflambe failed: ~p~n", [Error]),
            halt(1)
    end.' -extra "$source_file" "$out_dir"
