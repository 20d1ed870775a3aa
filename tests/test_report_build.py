"""The comparison report built from synthetic run directories: content, figures, refusals."""

import json
import re

import pytest
from report_fixtures import fake_images, write_run

from fmbench.errors import RunDirError
from fmbench.report import build_report, load_run, load_runs, stats

N = 60
SECTIONS = ["1. What is compared", "2. Results on train, validation and test", "3. Learning curves",
            "4. Errors by class", "5. Sample predictions", "6. Where each model looks", "7. Cost",
            "8. Is the difference real?", "9. Analysis"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Two models x two seeds plus a pretrained model, with (fake) test images."""
    root = tmp_path_factory.mktemp("runs")
    dirs = [write_run(root, "cnn_seed", n=N, seed=s, accuracy=a) for s, a in ((0, 0.85), (1, 0.9))]
    dirs += [write_run(root, "vit_seed", n=N, seed=s, accuracy=a) for s, a in ((0, 0.7), (1, 0.75))]
    dirs.append(write_run(root, "vit_pretrained", n=N, accuracy=0.8, pretrained=True))
    out = root / "report"
    html_path = build_report(dirs, out, test_images=fake_images(N), command="fmbench compare X Y")
    return {"dirs": dirs, "out": out, "html": html_path.read_text(),
            "md": (out / "report.md").read_text(), "html_path": html_path}


def test_every_section_in_order_in_md_and_html(study):
    md, html = study["md"], study["html"]
    assert study["html_path"] == study["out"] / "report.html"
    md_pos = [md.index(f"## {s}\n") for s in SECTIONS]
    html_pos = [html.index(f">{s}</h2>") for s in SECTIONS]
    assert md_pos == sorted(md_pos) and html_pos == sorted(html_pos)
    for sub in ("Confusion matrices", "Per-class F1", "Most confused pairs", "Over seeds", "Provenance"):
        assert f"### {sub}" in md and f">{sub}</h3>" in html
    assert "<title>" in html and '<nav>' in html          # title and table of contents
    for s in SECTIONS:
        assert re.search(rf'<a href="#[^"]+">{re.escape(s)}</a>', html)


def test_figures_written_referenced_and_embedded(study):
    figs = sorted(p.name for p in (study["out"] / "figures").iterdir())
    expected = {"curves_cnn_seed.png", "curves_vit_seed.png", "curves_all.png", "per_class_f1.png",
                "sample_predictions.png", "saliency_samples.png", "saliency_class_means.png", "deletion_curves.png"}
    expected |= {f"{kind}_{m}.png" for kind in ("confusion", "confused")
                 for m in ("cnn_seed", "vit_seed", "vit_pretrained")}
    assert set(figs) == expected                           # no curves for the pretrained model
    for name in figs:
        assert (study["out"] / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"](figures/{name})" in study["md"]
    html = study["html"]
    srcs = re.findall(r'<img src="([^"]*)"', html)
    assert len(srcs) == len(figs)
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in html and "https://" not in html and "figures/" not in html
    assert not [p for p in study["out"].iterdir() if p.name.startswith(".")]   # temp dir gone


def test_seed_groups_mean_std_and_pretrained_marked(study):
    cnn = [load_run(d) for d in study["dirs"][:2]]
    acc = stats.mean_std([r.eval["splits"]["test"]["accuracy"] * 100 for r in cnn])
    cnn_table = study["md"][study["md"].index("### cnn_seed: 2 seeds"):]
    test_row = next(line for line in cnn_table.splitlines() if line.startswith("| test |"))
    assert f"| {acc.mean:.2f} ± {acc.std:.2f}% | 92.1% |" in test_row        # ours, then the study's
    assert "| cnn_seed | 0, 1 |" in study["md"]               # the over-seeds table
    assert "permutation test" in study["md"]
    assert "pretrained (evaluation only)" in study["md"]
    assert "vit_pretrained: pretrained, evaluation only" in study["md"]


def test_mcnemar_row_matches_the_runs(study):
    a, b = load_run(study["dirs"][0]), load_run(study["dirs"][2])     # both seed 0
    m = stats.mcnemar(a.preds, b.preds, a.labels)
    row = next(line for line in study["md"].splitlines() if line.startswith("| cnn_seed | vit_seed | seed 0"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[7:9] == [str(m.b), str(m.c)]
    assert "lowest seed both models share" in study["md"]


def test_analysis_and_provenance_come_from_the_numbers(study):
    md = study["md"]
    analysis = md[md.index("## 9. Analysis"):]
    assert "cnn_seed has the highest test accuracy" in analysis
    assert "significant at 0.05" in analysis
    assert "struggles most with" in analysis
    assert "`fmbench compare X Y`" in analysis
    for d in study["dirs"]:
        cfg = json.loads((d / "config.json").read_text())
        assert cfg["config_hash"] in analysis and str(d) in analysis
    assert "0123456789ab" in analysis and "2.13.0" in analysis


def test_sample_predictions_same_images_and_misclassifications_marked(study):
    md = study["md"]
    sec = md[md.index("## 5. Sample predictions"):md.index("## 6.")]
    rows = [line for line in sec.splitlines() if line.startswith("| #")]
    assert len(rows) == 6
    assert any("**✗ " in r for r in rows)                   # the fixture's vit_seed errs on some
    assert '<td class="bad">✗ ' in study["html"]


def test_without_images_notes_and_single_run_has_no_significance_section(tmp_path):
    d = write_run(tmp_path, "cnn_seed", n=N)
    build_report([d], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Is the difference real?" not in md and "## 8. Analysis" in md and "Only one model" in md
    assert "Example images omitted" in md
    figs = {p.name for p in (tmp_path / "out" / "figures").iterdir()}
    assert figs == {"curves_cnn_seed.png", "confusion_cnn_seed.png", "per_class_f1.png",
                    "saliency_class_means.png", "deletion_curves.png"}


def test_rewrite_removes_figures_of_the_earlier_report(tmp_path):
    a = write_run(tmp_path, "cnn_seed", n=N)
    b = write_run(tmp_path, "vit_seed", n=N)
    build_report([a, b], tmp_path / "out")
    assert (tmp_path / "out" / "figures" / "confusion_vit_seed.png").exists()
    build_report([a], tmp_path / "out")                      # the same directory, one model now
    figs = {p.name for p in (tmp_path / "out" / "figures").iterdir()}
    assert figs == {"curves_cnn_seed.png", "confusion_cnn_seed.png", "per_class_f1.png",
                    "saliency_class_means.png", "deletion_curves.png"}


def test_wrong_number_of_images_is_a_note(tmp_path):
    d = write_run(tmp_path, "cnn_seed", n=N)
    build_report([d], tmp_path / "out", test_images=fake_images(N + 1))
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Example images omitted: the given test images have shape (61, 28, 28)" in md


def test_mismatched_test_hash_is_refused(tmp_path):
    a = write_run(tmp_path, "cnn_seed", n=N)
    b = write_run(tmp_path, "vit_seed", n=N, test_hash="another-test-set")
    with pytest.raises(RunDirError, match="different test data"):
        build_report([a, b], tmp_path / "out")
    assert not (tmp_path / "out" / "report.html").exists()


@pytest.mark.parametrize("breakage, message", [
    (lambda d: (d / "summary.json").unlink(), "summary.json: file is missing"),
    (lambda d: _edit(d / "summary.json", status="running"), "summary.json: status is 'running'"),
    (lambda d: _edit(d / "config.json", format_version=3), "config.json: format version 3"),
    (lambda d: (d / "eval.json").unlink(), "eval.json: file is missing"),
    (lambda d: (d / "env.json").unlink(), "env.json: file is missing"),
    (lambda d: (d / "metrics.jsonl").unlink(), "metrics.jsonl: file is missing"),
    (lambda d: (d / "test_outputs.safetensors").unlink(), "test_outputs.safetensors: file is missing"),
    (lambda d: (d / "test_outputs.safetensors").write_bytes(b"junk"), "test_outputs.safetensors"),
    (lambda d: (d / "metrics.jsonl").write_text("{not json\n"), "metrics.jsonl: line 1"),
])
def test_incomplete_run_dir_names_the_file(tmp_path, breakage, message):
    d = write_run(tmp_path, "cnn_seed", n=N)
    breakage(d)
    with pytest.raises(RunDirError, match=re.escape(message)):
        load_run(d)


def _edit(path, **changes):
    obj = json.loads(path.read_text())
    obj.update(changes)
    path.write_text(json.dumps(obj))


def test_grouping_by_seed_and_labels(tmp_path):
    dirs = [write_run(tmp_path, "cnn_seed", n=N, seed=s) for s in (2, 0, 1)]
    dirs.append(write_run(tmp_path, "cnn_seed", n=N, seed=0, preset="full"))
    groups = load_runs(dirs)
    assert list(groups) == ["cnn_seed/quick", "cnn_seed/full"]
    assert [r.seed for r in groups["cnn_seed/quick"]] == [0, 1, 2]
    with pytest.raises(RunDirError, match="given twice"):
        load_runs([dirs[0], dirs[0]])


def test_rebuild_is_deterministic(tmp_path):
    dirs = [write_run(tmp_path, m, n=N, accuracy=a) for m, a in (("cnn_seed", 0.9), ("vit_seed", 0.8))]
    build_report(dirs, tmp_path / "out", command="c")
    first = (tmp_path / "out" / "report.md").read_text()
    build_report(dirs, tmp_path / "out", command="c")
    assert (tmp_path / "out" / "report.md").read_text() == first


# ---------------------------------------------------------------- the study's question: tiers, pairs, the quoted table

@pytest.fixture(scope="module")
def four(tmp_path_factory):
    """The default study's shape: the study pair trained, the strong pair pretrained."""
    root = tmp_path_factory.mktemp("four")
    dirs = [write_run(root, "cnn_seed", n=N, accuracy=0.9, preset="fast"),
            write_run(root, "vit_seed", n=N, accuracy=0.7, preset="fast"),
            write_run(root, "cnn_best", n=N, accuracy=0.95, preset="best", pretrained=True),
            write_run(root, "vit_best", n=N, accuracy=0.9, preset="best", pretrained=True)]
    build_report(dirs, root / "report")
    return (root / "report" / "report.md").read_text()


def test_pairs_are_cnn_with_vit_inside_each_tier(four):
    sig = four[four.index("## 8. Is the difference real?"):four.index("## 9.")]
    rows = [line for line in sig.splitlines() if line.startswith("| ") and "McNemar" not in line
            and "---" not in line]
    assert [r.split("|")[1:3] for r in rows] == [[" cnn_seed ", " vit_seed "], [" cnn_best ", " vit_best "]]
    compared = four[four.index("## 1. What is compared"):four.index("## 2.")]
    assert "| the study's architectures | cnn_seed | CNN | trained here with preset `fast`" in compared
    assert "| the strong models | vit_best | ViT | shipped weights, evaluated here" in compared
    assert "compare cnn_seed with vit_seed; cnn_best with vit_best" in compared


def test_analysis_answers_the_question_per_tier(four):
    analysis = four[four.index("## 9. Analysis"):]
    assert "The answer on this test set: the CNN is more accurate in every tier compared." in analysis
    assert "Among the study's architectures, the CNN is more accurate: cnn_seed" in analysis
    assert "Among the strong models, the CNN is more accurate: cnn_best" in analysis
    assert "The CNN − ViT gap narrows from" in analysis
    assert "The study reported 92.1% vs 70.0% for these two architectures, a 22.1-point gap; with preset `fast`" in analysis


def test_a_hybrid_is_paired_with_the_cnn_and_the_vit_of_its_tier(tmp_path):
    dirs = [write_run(tmp_path, m, n=N, accuracy=a, preset="best", pretrained=True)
            for m, a in (("cnn_best", 0.95), ("vit_best", 0.9), ("hybrid_best", 0.93))]
    build_report(dirs, tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    sig = md[md.index("## 8. Is the difference real?"):md.index("## 9.")]
    rows = [line.split("|")[1:3] for line in sig.splitlines() if line.startswith("| ") and "McNemar" not in line
            and "---" not in line]
    assert rows == [[" cnn_best ", " vit_best "], [" cnn_best ", " hybrid_best "], [" hybrid_best ", " vit_best "]]
    assert "| the strong models | hybrid_best | hybrid | shipped weights, evaluated here" in md
    analysis = md[md.index("## 9. Analysis"):]
    assert "Among the strong models, the CNN is more accurate: cnn_best" in analysis
    assert "The hybrid hybrid_best (a convolutional tokenizer before a transformer) is" in analysis
    assert "below the CNN cnn_best" in analysis and "above the ViT vit_best" in analysis


def test_runs_without_a_cnn_vit_pair_in_a_tier_are_all_paired(tmp_path):
    dirs = [write_run(tmp_path, m, n=N, accuracy=a) for m, a in (("cnn_seed", 0.9), ("cnn_best", 0.95),
                                                                 ("my_model", 0.8))]
    build_report(dirs, tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    for a, b in (("cnn_seed", "cnn_best"), ("cnn_seed", "my_model"), ("cnn_best", "my_model")):
        assert f"| {a} | {b} |" in md


def test_every_report_sets_the_studys_figures_beside_ours(four):
    """One table per model; for the study's two architectures its published figures stand in the
    same rows as ours (split x metric: ours | the study's)."""
    from fmbench.published import PUBLISHED

    results = four[four.index("## 2. Results"):four.index("## 3.")]
    header = ("| Split | Loss (ours) | Loss (study) | Accuracy (ours) | Accuracy (study) | "
              "Weighted F1 (ours) | Weighted F1 (study) |")
    for model, rows in (("cnn_seed", (("train", "0.233", "94.5%", "0.944"), ("validation", "0.275", "93.2%", "0.931"),
                                      ("test", "0.302", "92.1%", "0.920"))),
                        ("vit_seed", (("train", "0.75", "71.0%", "0.700"), ("validation", "16.48¹", "74.0%", "0.720"),
                                      ("test", "0.31", "70.0%", "0.700")))):
        table = results[results.index(f"### {model}"):]
        table = table[:table.index("\n\n", table.index(header))]
        assert header in table
        for split, loss, acc, f1 in rows:
            row = next(line for line in table.splitlines() if line.startswith(f"| {split} |"))
            cells = [c.strip() for c in row.strip("|").split("|")]
            assert (cells[2], cells[4], cells[6]) == (loss, acc, f1), row
            assert cells[1].replace(".", "").isdigit() and cells[3].endswith("%")    # ours beside them
    assert "| Split | Loss | Accuracy | Weighted F1 |" in results[results.index("### cnn_best"):]   # no study row
    assert "16.48 / 24 = 0.687" in results
    assert PUBLISHED["vit_seed"]["val"].loss == 16.48


def test_runs_trained_on_different_data_sets_are_refused(tmp_path):
    a = write_run(tmp_path, "cnn_seed", n=N)
    b = write_run(tmp_path, "vit_seed", n=N)
    for d, key in ((a, "aaaa000011112222"), (b, "bbbb000011112222")):
        _edit(d / "config.json", data={"name": "idx", "key": key, "classes": []})
    with pytest.raises(RunDirError, match="trained on different data sets .idx key aaaa000011112222 vs "
                                          "idx key bbbb000011112222"):
        load_runs([a, b])


def test_where_each_model_looks_reads_the_recorded_explanations(study, tmp_path):
    md = study["md"]
    sec = md[md.index("## 6. Where each model looks"):md.index("## 7.")]
    assert "cnn_seed: Grad-CAM" in sec and "vit_seed: attention rollout" in sec
    assert "Deletion AUC (salient first)" in sec and "Rank corr. with random weights" in sec
    assert "Shirt vs T-shirt/top" in sec
    # A run written before explanations were recorded: the section says so and names the command.
    old = write_run(tmp_path, "cnn_seed", n=N, explained=False)
    new = write_run(tmp_path, "vit_seed", n=N)
    build_report([old, new], tmp_path / "out")
    md2 = (tmp_path / "out" / "report.md").read_text()
    sec2 = md2[md2.index("Where each model looks"):]
    assert "No explanation recorded for cnn_seed" in sec2 and "fmbench explain RUN_DIR --record" in sec2


def test_maps_that_do_not_beat_random_are_called_pictures(tmp_path):
    weak = write_run(tmp_path, "cnn_seed", n=N, accuracy=0.45)          # fixture: no better than random
    build_report([weak], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "do not clearly beat a random order" in md and "cnn_seed" in md
