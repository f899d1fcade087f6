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
            #{compensated_us := Compensated, events := Events} = Info,
            ok = file:delete(Archive),
            {ok, Bin} = file:read_file(File),
            Lines = [begin
                         [Stack, N] = string:split(L, " ", trailing),
                         {binary_to_integer(N), string:split(Stack, ";", all)}
                     end || L <- binary:split(Bin, <<"\n">>, [global, trim_all])],
            Me = list_to_binary(pid_to_list(self())),
            Wall = lists:sum([N || {N, [P | _]} <- Lines, P =:= Me]),
            Procs = length(lists:usort([P || {_, [P | _]} <- Lines])),
            OffCpu = [<<"sleep">>, <<"runnable">>, <<"[os preempted]">>],
            OnCpu = lists:foldl(fun({N, Frames}, M) ->
                                        F = lists:last(Frames),
                                        case lists:member(F, OffCpu) of
                                            true -> M;
                                            false -> maps:update_with(F, fun(X) -> X + N end, N, M)
                                        end
                                end, #{}, Lines),
            Deepest = lists:max([length(Frames) - 1 || {_, Frames} <- Lines]),
            %% Time under the error handler that is not loading a module:
            %% none, when a function reached through it is drawn in its place.
            Loading = [<<"code_server:call/1">>, <<"code:ensure_loaded/1">>,
                       <<"error_handler:ensure_loaded/1">>],
            Handler = <<"error_handler:undefined_function/3">>,
            NotLoading = lists:sum([N || {N, Frames} <- Lines, lists:member(Handler, Frames),
                                         not lists:any(fun(F) -> lists:member(F, Loading) end,
                                                       Frames)]),
            io:format("Compiled ~ts under eflambe: ~.1f ms of program time (~.1f ms of "
                      "tracing cost over ~b events taken out), ~b processes, ~b stacks, "
                      "the deepest ~b functions; ~.2f% of the time under ~s outside loading.~n",
                      [filename:basename(Source), Wall / 1000, Compensated / 1000, Events, Procs,
                       length(Lines), Deepest,
                       100 * NotLoading / max(1, lists:sum([N || {N, _} <- Lines])), Handler]),
            io:format("Functions with the most time on top of the stack, running:~n"),
            [io:format("  ~6.1f ms  ~s~n", [N / 1000, F])
             || {F, N} <- lists:sublist(lists:reverse(lists:keysort(2, maps:to_list(OnCpu))), 8)],
            io:format("Flamegraph, folded stacks (~.1f MB): ~s~n",
                      [filelib:file_size(File) / 1048576, Relative(File)]),
            io:format("Flamegraph, interactive SVG (~.1f MB; open it in a web browser): ~s~n",
                      [filelib:file_size(Svg) / 1048576, Relative(Svg)]),
            halt(0);
        Error ->
            io:format(standard_error, "eflambe failed: ~p~n", [Error]),
            halt(1)
    end.' -extra "$source_file" "$out_dir"
