# Shortcuts for the two README commands.
.PHONY: demo test
demo:
	./run-demo
test:
	./run-tests
