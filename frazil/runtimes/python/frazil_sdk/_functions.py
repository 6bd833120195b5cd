"""`functions`: calling other functions of this installation.

    env = functions.invoke("resize", {"key": k})                  # the callee's envelope (a dict)
    iid = functions.invoke("report", {}, mode="async", delay_s=60) # the queued invocation's id

A sync callee's timeout is cut to this invocation's remaining time. A chain of calls deeper
than 8 raises SdkError (type "ChainTooDeep"); a callee whose tier stays full raises SdkError
(type "TooManyRequests"). The callee's failure is not raised: it is in the envelope
(`success` false, `error`), as an API caller sees it.
"""


class Functions:
    def __init__(self, runner):
        self._run = runner.run

    def invoke(self, name, event=None, *, mode="sync", delay_s=None):
        fields = {"name": name, "event": event, "mode": mode}
        if delay_s is not None:
            fields["delay_s"] = delay_s
        return self._run("functions.invoke", fields)

    def __repr__(self):
        return "Functions()"
