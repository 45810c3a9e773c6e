# bedrock-meter: the two commands a newcomer needs are `make demo` and `make test`.
.PHONY: demo dashboard test lint check-infra bench clean-local

## Ingest the sample events into a local DynamoDB and print the totals.
demo:
	cargo build -p bedrock-meter-cli
	scripts/with-dynamodb-local.sh scripts/demo.sh

## The dashboard on the demo data at http://127.0.0.1:8080/ (PORT=... to change) until Ctrl-C.
dashboard:
	cargo build -p bedrock-meter-cli
	scripts/dashboard.sh

## Run the whole test suite (unit, property, DynamoDB Local, Lambda emulator, templates).
test:
	scripts/test.sh

## Formatting and lints, as CI runs them.
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## Performance: the floor benchmark (pipeline as a ratio to the unavoidable work,
## and to plain Python and Node pipelines), then the criterion benchmark.
bench:
	cargo bench -p meter-core --bench floor -- --baselines
	cargo bench -p meter-core --bench pipeline

## Offline checks of the SAM template and the CDK app.
check-infra:
	infra/check.sh

## Remove the locally installed DynamoDB Local.
clean-local:
	rm -rf .local
