"""Markdown report of the inference benchmark (``inference.py``) from its results.

Why a file of its own: rendering is independent of measuring; the JSON written next to the
Markdown holds every figure, and this turns it into the tables ``benchmarks/README.md`` cites.
"""

from typing import Any, Dict

from environment import report_header


def markdown(results: Dict[str, Any]) -> str:
    ctx = results["context"]
    lines = [
        *report_header("inference", ctx),
        f"- git: {ctx['git']['commit']} (dirty: {ctx['git']['dirty']})",
        f"- backbone: {ctx['settings']['backbone']}, max length {ctx['settings']['max_length']}, "
        f"batch {ctx['settings']['batch_size']}, bucket_window {ctx['settings']['window']}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in ctx["versions"].items()),
        f"- load average at start: {ctx['load_start']}, at end: {ctx['load_end']}",
        "",
    ]
    for dataset, part in results.get("pipe", {}).items():
        lines += [
            f"## nlp.pipe on {part['texts']} {dataset}",
            "",
            "| configuration | docs/s (mean ± std) | runs (s) | docs per CPU s | CPU s per "
            "wall s | padding share | max abs diff |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, row in part["configs"].items():
            runs = ", ".join(f"{s:.1f}" for s in row["seconds"])
            lines.append(
                f"| {name} | {row['docs_per_s_mean']} ± {row['docs_per_s_std']} | {runs} | "
                f"{row['docs_per_cpu_s']} | {row['cpu_s_per_wall_s']} | "
                f"{row['padding_share']} | {row['max_abs_diff_vs_first']:.1e} |"
            )
        over = part["overheads"]
        shares = ", ".join(f"{k}: {v}" for k, v in part["padding_share_by_window"].items())
        lines += [
            "",
            f"- bucketed / unbucketed: **{part['bucketed_over_unbucketed']}**; bucketed / "
            f"transformers: **{part['bucketed_over_transformers']}**; unbucketed / "
            f"transformers: {part['unbucketed_over_transformers']}",
            f"- extra tokenisation for the sort: {over['length_tokenisation_s']} s per "
            f"{over['texts']} texts = {100 * over['length_tokenisation_share_of_forward']:.2f}% "
            f"of their forward passes; inference_mode / no_grad forward speed-up: "
            f"{over['inference_mode_speedup']}",
            f"- padding share of the batches by bucket_window (0 = off): {shares}",
            "",
        ]
    if "ray" in results:
        ray_part = results["ray"]
        lines += [
            f"## Ray Data: {ray_part['workers']} CPU actors vs one process, "
            f"{ray_part['texts']} tweets",
            "",
            "| | wall (s) | peak RSS (MiB) |",
            "| --- | --- | --- |",
            f"| classify, one process | {ray_part['single_process_s']} | "
            f"{ray_part['single_process_peak_rss_mib']} |",
            f"| classify_with_ray | {ray_part['ray_s']} | per actor: "
            f"{', '.join(map(str, ray_part['actor_peak_rss_mib']))} |",
            "",
            f"- speed-up: **{ray_part['speedup']}**; rows written {ray_part['rows_written']}, "
            f"ids in order: {ray_part['ids_in_order']}, max abs diff vs one process "
            f"{ray_part['max_abs_diff_vs_single']:.1e}",
            f"- {ray_part['note']}",
            "",
        ]
    if "classify" in results:
        part = results["classify"]
        lines += [
            f"## classify on a generated CSV of {part['rows']} rows ({part['input_mib']} MiB)",
            "",
            f"- model: {part['model']}",
            f"- {part['seconds']} s, {part['docs_per_s']} docs/s; rows written "
            f"{part['rows_written']} of {part['rows']}, ids in order: {part['ids_in_order']}",
            f"- statuses written {part['statuses_written']}, expected {part['statuses_expected']}",
            "- RSS (MiB) when this share of the output was written: "
            + ", ".join(
                f"{k}: {v}" for k, v in part["rss_mib_when_share_of_output_written"].items()
            ),
            f"- peak RSS **{part['peak_rss_mib']} MiB**; growth from 10% written to the end "
            f"**{part['rss_growth_from_10_percent_written_mib']} MiB** ({part['rss_samples']} "
            "samples, every 0.5 s)",
            "",
        ]
    return "\n".join(lines)
