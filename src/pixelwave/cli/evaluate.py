"""pixelwave eval: the exact held-out likelihood of a checkpoint."""

from __future__ import annotations

import json
import sys

import torch

from pixelwave.cli.common import (
    add_checkpoint_argument,
    add_command,
    device_of,
    load_checkpoint,
    load_data_for,
    positive,
)
from pixelwave.compat import check_compatible
from pixelwave.distributions import DRAW_SHAPINGS
from pixelwave.errors import UserError


def add_parser(sub) -> None:
    p = add_command(sub, "eval", "exact held-out bits/dim of a checkpoint",
                    "pixelwave eval runs/demo --data mnist-sample-binary")
    add_checkpoint_argument(p)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--batch-size", type=positive(), help="examples per forward pass (default 100; audio 16)")
    p.add_argument("--device", default="auto")
    p.add_argument("--speech-temperature", type=positive(float),
                   help="mel WaveNets: the sampling temperature of the re-spoken utterances (default 1, or what a "
                        "pretrained model's card recommends)")
    p.add_argument("--speech-voiced-temperature", type=positive(float),
                   help="--pitch vocoders: the temperature where the frames are voiced (--speech-temperature where "
                        "they are not, linear between)")
    p.add_argument("--speech-probability-floor", type=float, metavar="P",
                   help="categorical vocoders: the probability floor of the re-spoken utterances' draws (see "
                        "resynthesize --probability-floor)")
    p.add_argument("--speech-draw-shaping", type=int, choices=DRAW_SHAPINGS,
                   help="mel WaveNets: high-pass the re-spoken utterances' draw errors 1 or 2 times (see resynthesize "
                        "--draw-shaping)")
    p.add_argument("--speech-utterances", type=positive(), default=4,
                   help="mel WaveNet (vocoder): re-speak this many held-out utterances per voice and score them "
                        "(STOI, MCD, PocketSphinx WER of recording and re-spoken audio; default 4)")
    p.add_argument("--speech-seed", type=int, default=0,
                   help="mel WaveNet: utterance i is drawn with seed SEED + i (default 0); other seeds show how much "
                        "the scores owe to one draw")
    p.add_argument("--speech-draws", type=positive(), default=1, metavar="N",
                   help="mel WaveNet: re-speak each utterance N times (draw d with seed SEED + 1000 d + i) and report "
                        "the re-spoken scores' means over the draws, and each draw's (default 1)")
    p.add_argument("--no-speech-scores", action="store_true", help="mel WaveNet: bits/sample only")
    p.add_argument("--speech-out", help="mel WaveNet: also write the re-spoken and recorded WAVs and the texts to "
                   "this folder (VOICE-N.wav, VOICE-N-recording.wav, VOICE-N.txt; VOICE-N-drawD.wav for the draws "
                   "after the first)")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args, parser) -> int:
    from pixelwave.training import evaluate

    device = device_of(args.device)
    model, info = load_checkpoint(args.checkpoint, device, not args.no_verify)
    audio = model.data_kind == "audio"
    # Audio is loaded as the run was: its sample rate, mu-law levels, crop and mel options (data.json).
    dataset = load_data_for(model, args.data, args.split, info)
    check_compatible(model, dataset, info)
    if len(dataset) == 0:
        raise UserError(f"the {args.split} split of {args.data} is empty")
    batch_size = args.batch_size or (16 if audio else 100)
    torch.manual_seed(0)  # a stochastic bound (PixelVAE's ELBO) gives the same figure every time
    result = evaluate(model, dataset, batch_size, device)
    result.update(data=args.data, split=args.split, checkpoint=str(args.checkpoint), model=model.model_name,
                  bound=model.is_bound)
    if audio:
        seconds = result["examples"] * dataset.crop / dataset.sample_rate
        result.update(bits_per_sample=result["bits_per_dim"], samples_per_example=dataset.crop,
                      sample_rate=dataset.sample_rate, seconds=seconds)
    speech, note = None, None
    if audio and model.cond_channels is not None and not args.no_speech_scores:
        speech, note = speech_scores(model, dataset, args, device)
        result.update(speech_scores=speech)
        if note:
            result.update(speech_scores_note=note)
    if args.json:
        print(json.dumps(result))
    elif audio:
        print(f"{args.data} [{args.split}]: {result['bits_per_sample']:.4f} bits/sample, "
              f"{result['nats_per_example']:.1f} nats per clip ({result['examples']} clips of {dataset.crop} "
              f"samples, {seconds:.1f} s at {dataset.sample_rate} Hz)")
        if speech is not None:
            print(speech_table(speech))
    else:
        bound = model.is_bound
        print(f"{args.data} [{args.split}]: {'<= ' if bound else ''}{result['bits_per_dim']:.4f} bits/dim, "
              f"{'<= ' if bound else ''}{result['nats_per_example']:.2f} nats per image ({result['examples']} images)"
              + (" -- an upper bound from the ELBO, not the exact likelihood" if bound else ""))
    return 0


def speech_scores(model, dataset, args, device) -> tuple[dict | None, str | None]:
    """score_resynthesis on the split, or (None, why) when the speech-eval extra is missing: bits/sample stand."""
    from pixelwave import pretrained
    from pixelwave.cli.audio import draw_shaping, probability_floor, voiced_temperature
    from pixelwave.speech_eval import MissingExtra, score_resynthesis

    speech_temperature = args.speech_temperature or pretrained.temperature(args.checkpoint)
    voiced = voiced_temperature(args.speech_voiced_temperature, args.checkpoint, model, "--speech-voiced-temperature")
    floor = probability_floor(args.speech_probability_floor, args.checkpoint, model, "--speech-probability-floor")
    try:
        return score_resynthesis(model, dataset, args.speech_utterances, seed=args.speech_seed, out_dir=args.speech_out,
                                 device=device, temperature=speech_temperature, voiced_temperature=voiced,
                                 probability_floor=floor,
                                 draw_shaping=draw_shaping(args.speech_draw_shaping, args.checkpoint),
                                 draws=args.speech_draws), None
    except MissingExtra as e:
        print(f"note: no speech scores: {e}", file=sys.stderr)
        return None, str(e)


def speech_table(scores: dict) -> str:
    """Per-voice scores as an aligned text table, the mean over voices last."""
    def score(x, spec):
        return "-" if x is None else format(x, spec)

    draws = scores.get("draws", 1)
    lines = ["re-spoken held-out utterances scored against their recordings (WER: PocketSphinx, en-US model)"
             + (f"; re-spoken scores: means of {draws} draws, seeds {', '.join(map(str, scores['seeds']))}"
                if draws > 1 else ""),
             f"{'voice':<10} {'utts':>4} {'seconds':>7} {'STOI':>6} {'MCD dB':>7} {'WER rec':>8} {'WER re-spoken':>13}"
             + ("  WER per draw" if draws > 1 else "")]
    for name, v in [*scores["voices"].items(), ("mean", scores["mean"])]:
        per_draw = v.get("draws")
        lines.append(f"{name:<10} {v.get('utterances', ''):>4} {v.get('seconds', ''):>7} {score(v['stoi'], '.3f'):>6} "
                     f"{score(v['mcd_db'], '.2f'):>7} {score(v['wer_recording'], '.3f'):>8} "
                     f"{score(v['wer_resynthesis'], '.3f'):>13}"
                     + (f"  {' '.join(score(d.get('wer_resynthesis'), '.3f') for d in per_draw)}" if per_draw else ""))
    return "\n".join(lines)
