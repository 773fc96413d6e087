"""The one GPU call's verdicts on the open performance targets (bench/summarize.py) read
the rules as bench/NOTES.md states them: checked here on hand-made figures."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from summarize import target_verdicts


def _row(op, dtype="torch.bfloat16", **impls):
    return {"op": op, "shape": "16x512x64x64", "layout": "nchw", "dtype": dtype, **impls}


def _verdicts(*rows):
    return [line.split()[0] for line in target_verdicts({"rows": list(rows)})]


def test_bandwidth_targets_need_80_percent_and_to_beat_torch_compile():
    fast = {"us_per_call": 100.0, "pct_of_copy_bw": 85.0}
    slow = {"us_per_call": 100.0, "pct_of_copy_bw": 79.9}
    assert _verdicts(_row("adain", fused=fast, compiled={"us_per_call": 101.0}),
                     _row("adain", fused=slow, compiled={"us_per_call": 150.0}),
                     _row("minibatch_stddev", fused=fast, compiled={"us_per_call": 99.0}),
                     _row("bias_lrelu_pixel_norm", fused=fast)) == [
        "met", "MISSED", "MISSED", "incomplete"]


def test_resampling_targets_take_the_faster_baseline_and_the_smaller_peak():
    fused = {"us_per_call": 100.0, "peak_mib": 500.0}
    assert _verdicts(
        _row("upsample_conv2d", fused=fused, eager={"us_per_call": 200.0, "peak_mib": 900.0},
             plain={"us_per_call": 180.0, "peak_mib": 600.0}),
        # 2.5x our reference but 1.7x the plain bf16 layer: missed
        _row("upsample_conv2d", fused=fused, eager={"us_per_call": 250.0, "peak_mib": 900.0},
             plain={"us_per_call": 170.0, "peak_mib": 600.0}),
        # fast enough, but the plain layer peaks lower
        _row("conv2d_downsample", fused=fused, eager={"us_per_call": 250.0, "peak_mib": 900.0},
             plain={"us_per_call": 200.0, "peak_mib": 450.0}),
        _row("conv2d_downsample", fused=fused, eager={"us_per_call": 250.0, "peak_mib": 900.0}),
    ) == ["met", "MISSED", "MISSED", "incomplete"]


def test_norm_act_targets_hold_the_step_to_eager_and_compile_and_the_pass_to_85_percent():
    fused = {"us_per_call": 100.0, "pct_of_copy_bw": 86.0}
    assert _verdicts(
        _row("norm_act", fused=fused, eager={"us_per_call": 150.0},
             compiled={"us_per_call": 110.0}),
        _row("norm_act", fused=fused, eager={"us_per_call": 149.0},
             compiled={"us_per_call": 200.0}),
        _row("norm_act", fused=fused, eager={"us_per_call": 200.0},
             compiled={"us_per_call": 109.0}),
        _row("norm_act", fused=fused, eager={"us_per_call": 200.0}),
        _row("norm_act_eval", fused=fused),
        _row("norm_act_eval", fused={"us_per_call": 100.0, "pct_of_copy_bw": 84.9}),
    ) == ["met", "MISSED", "MISSED", "incomplete", "met", "MISSED"]


def test_rows_no_target_covers_get_no_verdict():
    fused = {"us_per_call": 100.0, "peak_mib": 500.0, "pct_of_copy_bw": 50.0}
    assert _verdicts(_row("pixel_norm", fused=fused),
                     _row("upsample_conv2d", dtype="torch.float32", fused=fused),
                     _row("fir_upsample_conv2d", fused=fused)) == []



def test_the_augment_target_is_three_times_the_eager_pipeline():
    rows = [{"op": "augment_bgc", "shape": "32x3x256x256", "layout": "nchw",
             "dtype": "torch.bfloat16", "fused": {"us_per_call": 100.0},
             "eager": {"us_per_call": us}, "compiled": {"us_per_call": 250.0}}
            for us in (310.0, 290.0)]
    met, missed = target_verdicts({"rows": rows})
    assert met.startswith("met") and "3.10x eager" in met and "2.50x torch.compile" in met
    assert missed.startswith("MISSED")
    assert _verdicts({**rows[0], "compiled": {}}) == ["incomplete"]
