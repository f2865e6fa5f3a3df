"""Watching a policy defend: record episodes as a JSON trace, draw them (eval/replay.py).

    trace.py     record(policy, seed, episodes) -> the trace (every host's status, the alert
                 queue, the directive, each role's action, reward terms, attention), step by step
    frame.py     draw_frame(fig, trace, step): one step's picture, a function of the trace alone
    animate.py   write_animation(trace, episode, path): every step's frame, as a GIF or an MP4
    summary.py   draw_summary(trace): the one-page summary of the trace's episodes
"""
