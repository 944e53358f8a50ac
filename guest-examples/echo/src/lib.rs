//! `echo`: completes with its input unchanged (used by benchmarks and tests).

wit_bindgen::generate!({ path: "../../wit", world: "step" });

struct Echo;

impl Guest for Echo {
    fn run(input: Json, _ctx: StepContext) -> Result<Outcome, StepError> {
        Ok(Outcome::Completed(input))
    }
}

export!(Echo);
