"""What a run looks like to a person or a program: check reports (text and
JSON) and instruction traces.  Reports format; they decide nothing."""
