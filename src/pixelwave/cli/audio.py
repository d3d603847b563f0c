"""pixelwave generate | resynthesize | say | data speech: the audio commands."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from pixelwave.cli.common import Parser, add_checkpoint_argument, add_command, device_of, load_checkpoint, positive
from pixelwave.distributions import DRAW_SHAPINGS
from pixelwave.errors import UserError


def audio_output(path: str, force: bool, n: int = 1) -> tuple[list[Path], Path]:
    """New .wav files and their picture (same stem, .png): `path` itself for one clip, else `<stem>-1.wav` ..
    `<stem>-<n>.wav` beside it; none may exist without --force."""
    p = Path(path)
    if p.suffix.lower() != ".wav":
        raise UserError(f"{p}: output must be a .wav file")
    if not p.parent.exists():
        raise UserError(f"{p.parent}: output folder does not exist")
    wavs = [p] if n == 1 else [p.with_name(f"{p.stem}-{i}{p.suffix}") for i in range(1, n + 1)]
    png = p.with_suffix(".png")
    for q in (*wavs, png):
        if q.exists() and not force:
            raise UserError(f"{q} exists: choose another --out or pass --force to replace it")
    return wavs, png


def load_audio_model(checkpoint: str, device: str, command: str, verify: bool = True):
    device = device_of(device)
    model, info = load_checkpoint(checkpoint, device, verify)
    if model.data_kind != "audio":
        raise UserError(f"{checkpoint} is a {model.model_name} (image) checkpoint: `pixelwave {command}` is "
                        f"for WaveNet; use `pixelwave sample` or `pixelwave complete`")
    if not info.get("sample_rate"):
        raise UserError(f"{checkpoint} has no data.json with the sample rate it was trained at: it is "
                        f"needed to write audio (train with `pixelwave train` to get one)")
    return model, info, device


def speaker_id(model, info: dict, name: str | None) -> tuple[int | None, str | None]:
    """--speaker NAME (or its number) -> (id, name) by the run's speaker table; None for speaker-less models."""
    if model.num_speakers is None:
        if name is not None:
            raise UserError("the model was trained without speakers (no speaker conditioning): leave out --speaker")
        return None, None
    names = info.get("speakers") or [str(i) for i in range(model.num_speakers)]
    if name is None:
        raise UserError(f"the model is speaker-conditional: pass --speaker NAME (one of {', '.join(names)})")
    if name in names:
        return names.index(name), name
    if name.isdigit() and int(name) < len(names):
        return int(name), names[int(name)]
    raise UserError(f"unknown speaker {name!r}: the model knows {', '.join(names)}")


def write_audio(outs: list[Path], png: Path, codes: torch.Tensor, model, rate: int, titles: list[str],
                reference=None) -> float:
    """Write the generated codes (N, T), one 16-bit WAV per row, and one picture of every waveform and its
    log-mel spectrogram (after `reference`, a (title, wave) panel, if given); returns the seconds per clip."""
    from pixelwave.audio import write_wav
    from pixelwave.viz import audio_figure, save_image

    waves = model.waveform(codes).numpy()  # (N, T); write_wav clips to [-1, 1]
    for out, wave in zip(outs, waves, strict=True):
        write_wav(out, wave, rate)
    panels = ([reference] if reference is not None else []) + list(zip(titles, waves, strict=True))
    save_image(audio_figure(panels, rate), png)
    return waves.shape[1] / rate


def prepare_generation(args, model) -> str:
    """Ready the fused step before the command starts its clock, and return the weight format that --weights
    (or its alias --bf16) asks for, after checking it can run (else UserError). The kernel is built now if
    generation will use it, saying so when it compiles (once per CPU, ~20 s), so that the compile is not in the
    samples/s reported."""
    from pixelwave.fast import _build, wavenet_step

    if args.bf16 and args.weights not in (None, "bf16"):
        raise UserError(f"--bf16 is --weights bf16; it cannot be combined with --weights {args.weights}")
    weights = "bf16" if args.bf16 else args.weights or "float32"
    flag = "--bf16" if args.bf16 else f"--weights {weights}"
    if args.naive:
        if weights != "float32":
            raise UserError(f"{flag} runs in the fused CPU step; it cannot be combined with --naive")
        return weights
    if next(model.parameters()).device.type == "cpu" and not wavenet_step.disabled():
        if not _build.built(wavenet_step.SOURCE):
            print("compiling the fast WaveNet kernel for this CPU (once; later runs reuse it)", flush=True)
        wavenet_step.kernel()  # a failure warns once; generation then takes the PyTorch path
    if weights == "float32":
        return weights
    param = next(model.parameters())
    why = model.fused_unsupported(weights, param.dtype, param.device)
    if why:
        raise UserError(f"{flag} cannot run here: {why}")
    return weights


def cmd_generate(args, parser) -> int:
    outs, png = audio_output(args.out, args.force, args.num)
    model, info, device = load_audio_model(args.checkpoint, args.device, "generate", not args.no_verify)
    if model.cond_channels is not None:
        raise UserError(f"{args.checkpoint} is conditioned on mel spectrograms (trained with --mel): it needs a "
                        f"recording to follow; use `pixelwave resynthesize {args.checkpoint} --input SPEECH.wav`")
    speaker, name = speaker_id(model, info, args.speaker)
    rate = info["sample_rate"]
    steps = max(1, round(args.seconds * rate))
    weights = prepare_generation(args, model)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    n = args.num
    codes = model.generate(steps, batch=n, speaker=speaker, generator=gen,
                           backend="naive" if args.naive else "auto", weights=weights,
                           temperature=temperature(args, args.checkpoint),
                           draw_shaping=draw_shaping(args.draw_shaping, args.checkpoint))  # (n, steps), one batch
    took = time.perf_counter() - t0
    who = f", speaker {name}" if name else ""
    titles = [f"{model.model_name}{who}, seed {args.seed}" + (f", clip {i + 1} of {n}" if n > 1 else "")
              for i in range(n)]
    seconds = write_audio(outs, png, codes, model, rate, titles)
    wrote = str(outs[0]) if n == 1 else f"{outs[0]} .. {outs[-1].name}"
    clips = f"{seconds:.2f} s" if n == 1 else f"{n} clips of {seconds:.2f} s"
    print(f"wrote {wrote} and {png} ({clips} at {rate} Hz{who}; generated {n * steps:,} samples in {took:.1f} s, "
          f"{n * steps / took:,.0f} samples/s, {'naive' if args.naive else 'cached'}{_weights_note(weights)})")
    return 0


def cmd_resynthesize(args, parser) -> int:
    from pixelwave.audio import read_audio

    outs, png = audio_output(args.out, args.force)
    model, info, device = load_vocoder(args.checkpoint, args, "resynthesize")
    speaker, name = speaker_id(model, info, args.speaker)
    wave, _ = read_audio(args.input, info["sample_rate"])  # mono, resampled to the model's rate; bad files: UserError
    if args.seconds:
        wave = wave[: max(1, round(args.seconds * info["sample_rate"]))]
    vocode(args, args.checkpoint, model, info, device, wave, speaker, name, outs, png,
           f"input: {Path(args.input).name}", f"the log-mel frames of {args.input}")
    return 0


def cmd_say(args, parser) -> int:
    from pixelwave.data.speech import check_voices, synthesise, voice_engine

    outs, png = audio_output(args.out, args.force)
    if not args.text.strip():
        raise UserError("nothing to say: the text is empty")
    engine = args.engine or voice_engine(args.voice)
    check_voices(engine, [args.voice])  # before the model loads: flite would fall back to its default voice
    if args.model is None:
        args.model = default_say_model(args.voice)
    model, info, device = load_vocoder(args.model, args, "say")
    names = info.get("speakers") or []
    if args.speaker is None and model.num_speakers is not None and args.voice in names:
        args.speaker = args.voice  # the vocoder knows this voice: condition on it
    speaker, name = speaker_id(model, info, args.speaker)
    wave = synthesise(args.text, args.voice, engine, info["sample_rate"])  # the classical front end
    vocode(args, args.model, model, info, device, wave, speaker, name, outs, png, f"front end: {engine} {args.voice}",
           f"{engine}'s {args.voice} saying {args.text[:40]!r}")
    return 0


SAY_MODEL, SAY_OTHER_VOICES = "pretrained:vocoder", "pretrained:vocoder-lpc"


def default_say_model(voice: str) -> str:
    """`say`'s vocoder when --model is not given: pretrained:vocoder for a voice it was trained on, else the
    speaker-independent pretrained:vocoder-lpc (pretrained:vocoder re-speaks unseen voices poorly: its card)."""
    from pixelwave import pretrained

    known = pretrained.trained_voices(SAY_MODEL)
    if known is None or voice in known:
        return SAY_MODEL
    print(f"vocoder: {SAY_OTHER_VOICES} ({SAY_MODEL} was trained on {', '.join(known)} only; --model to choose)")
    return SAY_OTHER_VOICES


def temperature(args, checkpoint: str) -> float:
    """--temperature, else what a shipped model's card recommends, else 1."""
    from pixelwave import pretrained

    return args.temperature if args.temperature is not None else pretrained.temperature(checkpoint)


def voiced_temperature(value: float | None, checkpoint: str, model, flag: str = "--voiced-temperature") -> float | None:
    """The flag's value, else what a shipped model's card recommends, else None (one temperature throughout);
    UserError for a model without pitch rows."""
    from pixelwave import pretrained

    if value is not None and not model.config.pitch:
        raise UserError(f"{flag} follows the frames' voicing, but {checkpoint} has no pitch rows (train with --pitch)")
    return value if value is not None else pretrained.voiced_temperature(checkpoint)


def draw_shaping(value: int | None, checkpoint: str) -> int:
    """The flag's value, else what a shipped model's card recommends, else 0 (independent draws)."""
    from pixelwave import pretrained

    return value if value is not None else pretrained.draw_shaping(checkpoint)


def probability_floor(value: float | None, checkpoint: str, model, flag: str = "--probability-floor") -> float:
    """The flag's value, else what a shipped model's card recommends, else 0 (none); UserError for a model whose
    output is not categorical, or a floor out of [0, 1 / levels)."""
    from pixelwave import pretrained
    from pixelwave.distributions import check_floor

    if value is None:
        return pretrained.probability_floor(checkpoint)
    if model.config.output != "categorical":
        raise UserError(f"{flag} is the categorical output's draw, but {checkpoint} has output "
                        f"{model.config.output!r}")
    try:
        check_floor(value, model.levels)
    except ValueError as e:
        raise UserError(f"{flag}: {e}") from None
    return value


def load_vocoder(checkpoint: str, args, command: str):
    """A mel-conditioned WaveNet and its run's data.json (which must hold the mel settings), or UserError."""
    model, info, device = load_audio_model(checkpoint, args.device, command, not args.no_verify)
    if model.cond_channels is None:
        raise UserError(f"{checkpoint} has no mel conditioning (train with --mel to get a vocoder): it "
                        f"cannot follow a recording; use `pixelwave generate`")
    mel = info.get("mel")
    if (not mel or (mel["n_mels"], mel["hop_length"], bool(mel.get("pitch")))
            != (model.config.mel_bands, model.hop_length, model.config.pitch)):
        raise UserError(f"{checkpoint}: data.json does not hold the mel settings the model was trained with")
    return model, info, device


def vocode(args, checkpoint: str, model, info: dict, device, wave, speaker, name, outs, png, reference: str,
           source: str) -> None:
    """Re-speak `wave` (numpy, at the model's rate) from its log-mel frames; write the WAV and the picture."""
    from pixelwave.audio import features

    rate, mel = info["sample_rate"], dict(info["mel"])
    pitch = bool(mel.pop("pitch", False))
    cond = features(torch.from_numpy(wave), rate, **mel, pitch_rows=pitch)[None]  # (1, C, ceil(T / hop))
    steps = cond.shape[-1] * mel["hop_length"]
    weights = prepare_generation(args, model)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    codes = model.generate(steps, speaker=speaker, cond=cond.to(device), generator=gen,
                           backend="naive" if args.naive else "auto", weights=weights,
                           temperature=temperature(args, checkpoint),
                           voiced_temperature=voiced_temperature(args.voiced_temperature, checkpoint, model),
                           probability_floor=probability_floor(args.probability_floor, checkpoint, model),
                           draw_shaping=draw_shaping(args.draw_shaping, checkpoint))  # (1, steps)
    took = time.perf_counter() - t0
    who = f", speaker {name}" if name else ""
    seconds = write_audio(outs, png, codes, model, rate, [f"WaveNet{who}"], reference=(reference, wave))
    print(f"wrote {outs[0]} and {png} ({seconds:.2f} s at {rate} Hz from {source}{who}; "
          f"{steps:,} samples in {took:.1f} s, {steps / took:,.0f} samples/s{_weights_note(weights)})")


def _weights_note(weights: str) -> str:
    return "" if weights == "float32" else f", {weights}"


def cmd_data_speech(args, parser) -> int:
    from tqdm import tqdm

    from pixelwave.data import speech

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not an empty folder: choose a new --out (nothing is overwritten)")
    voices = [v.strip() for v in args.voices.split(",") if v.strip()] if args.voices else None
    test_voices = [v.strip() for v in args.test_voices.split(",") if v.strip()] if args.test_voices else []
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="utterance", disable=args.no_progress)
        bar.update(done - bar.n)

    try:
        meta = speech.build_speech_corpus(out, voices=voices, sentences_file=args.sentences,
                                          sample_rate=args.sample_rate, voices_per_sentence=args.voices_per_sentence,
                                          test_every=args.test_every, progress=progress, engine=args.engine,
                                          test_voices=test_voices)
    finally:
        if bar is not None:
            bar.close()
    utts = meta["utterances"]
    test = sum(u["split"] == "test" for u in utts)
    unseen = f" (unseen, test only: {', '.join(meta['test_voices'])})" if meta["test_voices"] else ""
    print(f"wrote {out}: {len(utts)} utterances ({meta['seconds']:.0f} s at {meta['sample_rate']} Hz) of "
          f"{meta['sentences']} sentences in {len(meta['speakers'])} {meta['engine']} voices "
          f"({', '.join(meta['speakers'])}){unseen}, {test} held out; train on it with --data wav:{out}")
    return 0




FLOOR_HELP = ("a categorical vocoder: draw each sample with every code's probability less P, negatives to zero, "
              "renormalised (LPCNet's sampling, e.g. 0.002; default 0 = none, or what a pretrained model's card "
              "recommends)")
SHAPING_HELP = ("1 or 2: anticorrelate the draws' uniforms from sample to sample, so that each draw's error is "
                "high-passed once or twice (noise shaping: less of it where speech has its formants; each sample "
                "still drawn from its own distribution); default 0 = independent draws, or what a pretrained "
                "model's card recommends")


def add_parsers(sub) -> None:
    p = add_command(sub, "generate", "speak: draw audio from a WaveNet checkpoint into a WAV (+ PNG)",
                    "pixelwave generate runs/wavenet --speaker en-gb --seconds 1 --out gb.wav")
    add_checkpoint_argument(p)
    p.add_argument("--out", required=True, help="output .wav; the waveform + log-mel picture goes to .png beside it")
    p.add_argument("--seconds", type=positive(float), default=1.0, help="length (default 1 s)")
    p.add_argument("-n", "--num", type=positive(), default=1,
                   help="clips to draw in one batch (default 1; faster per clip than one at a time): written as "
                        "<out stem>-1.wav .. -N.wav, with one picture of all of them")
    p.add_argument("--speaker", help="speaker name (or number) of a speaker-conditional model")
    _generation_flags(p)
    p.set_defaults(func=cmd_generate)

    p = add_command(sub, "resynthesize", "re-speak a recording from its log-mel frames (mel WaveNet)",
                    "pixelwave resynthesize runs/vocoder --input speech.wav --out out.wav")
    add_checkpoint_argument(p)
    p.add_argument("--input", required=True, help="WAV/FLAC/OGG recording")
    p.add_argument("--out", required=True, help="output .wav; input and output pictures go to .png beside it")
    p.add_argument("--speaker", help="speaker name (or number) of a speaker-conditional model")
    p.add_argument("--seconds", type=positive(float), help="use only the first S seconds of --input")
    p.add_argument("--voiced-temperature", type=positive(float),
                   help="a --pitch vocoder: the temperature where the frames are voiced (--temperature where they "
                        "are not, linear between; LPCNet samples voiced speech sharper than noise)")
    p.add_argument("--probability-floor", type=float, metavar="P",
                   help=FLOOR_HELP)
    _generation_flags(p)
    p.set_defaults(func=cmd_resynthesize)

    p = add_command(sub, "say", "text to speech: a classical front end speaks, a WaveNet vocoder re-speaks",
                    'pixelwave say "The quick brown fox." --voice awb --out say.wav')
    p.description = ("text to speech: the text is rendered by a classical synthesiser (flite for its CMU voices "
                     "slt, rms, awb, kal16; espeak-ng for its accents, e.g. en-gb-scotland), and its log-mel frames "
                     "go to a mel-conditioned WaveNet, which renders the waveform. The words and prosody are the "
                     "front end's; the waveform is WaveNet's.")
    p.add_argument("text", help="what to say (quote it)")
    p.add_argument("--voice", required=True, help="the front end's voice: slt, rms, awb, kal16 (flite) or an "
                                                  "espeak-ng voice such as en-us, en-gb, en-gb-scotland")
    p.add_argument("--engine", choices=speech_engines(), help="the front end (default: the one with --voice)")
    p.add_argument("--model",
                   help="the mel-conditioned WaveNet (default: pretrained:vocoder for the voices it was trained on, "
                        "slt, rms and awb; pretrained:vocoder-lpc, speaker-independent, for any other)")
    p.add_argument("--no-verify", action="store_true",
                   help="load --model even if its files do not match its manifest.json")
    p.add_argument("--out", required=True, help="output .wav; the front end's and WaveNet's waveforms go to .png")
    p.add_argument("--speaker", help="speaker of a speaker-conditional vocoder (default: --voice, if it knows it)")
    p.add_argument("--voiced-temperature", type=positive(float),
                   help="a --pitch vocoder: the temperature where the frames are voiced (--temperature where they "
                        "are not, linear between; LPCNet samples voiced speech sharper than noise)")
    p.add_argument("--probability-floor", type=float, metavar="P",
                   help=FLOOR_HELP)
    _generation_flags(p)
    p.set_defaults(func=cmd_say)

    p = add_command(sub, "data", "build data sets (data speech: a speech corpus)",
                    "pixelwave data speech --out corpus/", threads=False)
    data_sub = p.add_subparsers(dest="dataset", required=True, parser_class=Parser)
    p = add_command(data_sub, "speech", "a speaker-labelled speech corpus made with espeak-ng or flite (load: "
                                        "wav:DIR)",
                    "pixelwave data speech --engine flite --test-voices kal16 --sentences alice --out corpus/")
    p.add_argument("--out", required=True, help="new (or empty) folder")
    p.add_argument("--engine", choices=speech_engines(), default="espeak-ng",
                   help="synthesiser: espeak-ng (formant voices in English accents; default) or flite (CMU voices "
                        "from recordings of real speakers, which a speech recogniser can read)")
    p.add_argument("--voices", help="comma-separated voices of the engine (default espeak-ng: en-us,en-gb,"
                                    "en-gb-scotland,en-029; flite: slt,rms,awb; flite also has kal16)")
    p.add_argument("--test-voices", help="comma-separated unseen voices: they speak only the held-out sentences, "
                                         "all in the test split (e.g. kal16), so a model is scored on a voice it "
                                         "never heard")
    p.add_argument("--sentences", help="text file, one sentence a line, or a shipped list: pixelwave (the 104 "
                                       "sentences, default) or alice (423 sentences of Alice in Wonderland)")
    p.add_argument("--sample-rate", type=positive(), default=16000)
    p.add_argument("--voices-per-sentence", type=positive(),
                   help="training sentences are spoken by this many voices in turn (default: all)")
    p.add_argument("--test-every", type=positive(), default=10, help="every N-th sentence is held out (default 10)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_data_speech)


def weight_formats() -> tuple[str, ...]:
    from pixelwave.models.wavenet.generation import WEIGHT_FORMATS

    return WEIGHT_FORMATS


def speech_engines() -> tuple[str, ...]:
    from pixelwave.data.speech import ENGINES

    return ENGINES


def _generation_flags(p) -> None:
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=positive(float),
                   help="sampling temperature (default 1, or what a pretrained model's card recommends)")
    p.add_argument("--draw-shaping", type=int, choices=DRAW_SHAPINGS, help=SHAPING_HELP)
    p.add_argument("--naive", action="store_true", help="use the reference generator (same audio, much slower)")
    p.add_argument("--weights", choices=weight_formats(),
                   help="the fused CPU step's weights: float32 (default), bf16 or fp16 (half the bytes: faster; fp16 "
                        "closer to float32, on CPUs that convert half floats: x86 F16C, ARM NEON) or int8 "
                        "(a scale per output channel: a quarter); products and sums stay float32, the audio "
                        "differs slightly from float32's (docs/benchmarks.md: speed and KL of each)")
    p.add_argument("--bf16", action="store_true", help="--weights bf16")
    p.add_argument("--force", action="store_true", help="replace --out and its .png if they exist")
    p.add_argument("--device", default="auto")
