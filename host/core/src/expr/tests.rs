use serde_json::{Value, json};

use super::*;
use cel::objects::Key;

fn compile(text: &str) -> Expr {
    Expr::compile(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// Evaluates `text` with `input` as the only variable.
fn eval(text: &str, input: Value) -> Result<Value, String> {
    compile(text).evaluate(&[("input", &input)])
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let e = Expr::compile("input.n +").unwrap_err();
    assert_eq!((e.line, e.column), (1, 10));
    assert_eq!(
        e.message,
        "syntax error: mismatched input '<EOF>' expecting an expression"
    );
    assert_eq!(
        e.to_string(),
        "1:10: syntax error: mismatched input '<EOF>' expecting an expression"
    );

    let e = Expr::compile("a +* b").unwrap_err();
    assert_eq!((e.line, e.column), (1, 4));

    // Columns count characters.
    let e = Expr::compile("'é' +* 1").unwrap_err();
    assert_eq!((e.line, e.column), (1, 6));
}

#[test]
fn syntax_errors_on_a_later_line() {
    let e = Expr::compile("input.n > 1 &&\n  (input.m < 2").unwrap_err();
    assert_eq!((e.line, e.column), (2, 15), "{e}");
    assert_eq!(e.message, "syntax error: missing ')' at '<EOF>'");

    let e = Expr::compile("input.a\n  && input.b )").unwrap_err();
    assert_eq!((e.line, e.column), (2, 14), "{e}");
}

#[test]
fn variables_are_the_free_top_level_names() {
    let e = compile("input.n * 2 > 5 && workflow.input.name == 'ada'");
    assert_eq!(e.variables(), ["input", "workflow"]);
    assert!(e.reads("input"));
    assert!(e.reads("workflow"));
    assert!(!e.reads("name"));
    assert!(!e.reads("n"));

    // Macro variables and type names are not variables.
    let e = compile("input.items.map(x, x * 2).exists(y, y > steps.a.min) && type(1) == int");
    assert_eq!(e.variables(), ["input", "steps"]);
    // A name bound by a macro is free outside it.
    let e = compile("input.all(x, x > 0) && x");
    assert_eq!(e.variables(), ["input", "x"]);
    assert_eq!(compile("1 + 2").variables(), [] as [String; 0]);
}

#[test]
fn unknown_variables_are_located() {
    let allowed = ["input", "workflow", "state", "steps"];
    let e = compile("input.a == 'foo' && foo.bar > 1");
    let error = e.check_variables(&allowed).unwrap_err();
    assert_eq!(
        error,
        ExprError {
            line: 1,
            column: 21,
            message: "unknown variable `foo` (available here: input, workflow, state, steps)"
                .to_owned(),
        }
    );

    // On a later line, after a field of the same name.
    let e = compile("input.output > 1 &&\n   output.done");
    let error = e.check_variables(&allowed).unwrap_err();
    assert_eq!((error.line, error.column), (2, 4));
    assert!(error.message.starts_with("unknown variable `output`"));

    assert_eq!(
        compile("input.a && state.b").check_variables(&allowed),
        Ok(())
    );
    assert_eq!(
        compile("input.map(output, output + 1)").check_variables(&allowed),
        Ok(())
    );
}

#[test]
fn the_identifier_scan_skips_fields_and_strings() {
    assert_eq!(find_identifier("'foo' + x.foo + foo", "foo"), Some(16));
    assert_eq!(find_identifier("\"\"\"a foo\"\"\" + foo", "foo"), Some(14));
    assert_eq!(find_identifier("r'\\' + foo", "foo"), Some(7));
    assert_eq!(find_identifier("'\\' foo' + foo", "foo"), Some(11));
    assert_eq!(find_identifier("foobar + barfoo", "foo"), None);
    assert_eq!(line_column("ab\ncd", 4), (2, 2));
}

#[test]
fn arithmetic_on_json_integers() {
    assert_eq!(eval("input.n * 2", json!({"n": 3})), Ok(json!(6)));
    assert_eq!(eval("input.n - 5", json!({"n": 3})), Ok(json!(-2)));
    assert_eq!(eval("input.x * 1.5", json!({"x": 2.0})), Ok(json!(3.0)));
    assert_eq!(
        eval("double(input.n) * 1.5", json!({"n": 3})),
        Ok(json!(4.5))
    );
    // Integers beyond i64 are doubles.
    assert_eq!(
        eval("input.big / 2.0", json!({"big": u64::MAX})),
        Ok(json!(u64::MAX as f64 / 2.0))
    );
}

#[test]
fn mixing_int_and_double_is_an_error() {
    assert_eq!(
        eval("input.n * 1.5", json!({"n": 3})),
        Err("unsupported operation: int * double (write double(x) to convert)".to_owned())
    );
    assert_eq!(
        eval("input.n + 1u", json!({"n": 3})),
        Err("unsupported operation: int + uint (write int(x) or uint(x) to convert)".to_owned())
    );
    assert_eq!(
        eval("'a' + input.n", json!({"n": 3})),
        Err("unsupported operation: string + int".to_owned())
    );
    assert_eq!(
        eval("input.s < 1", json!({"s": "a"})),
        Err("unsupported operation: string < int".to_owned())
    );
    assert_eq!(
        eval("-input.s", json!({"s": "a"})),
        Err("unsupported operation: -string".to_owned())
    );
}

#[test]
fn missing_keys_and_variables_are_errors() {
    assert_eq!(
        eval("input.limit > 3", json!({"n": 3})),
        Err("no such key `limit`".to_owned())
    );
    assert_eq!(
        eval("input['limit']", json!({})),
        Err("no such key `limit`".to_owned())
    );
    assert_eq!(
        compile("state.x").evaluate(&[("input", &json!({}))]),
        Err("no such variable `state`".to_owned())
    );
    assert_eq!(
        eval("frobnicate(input)", json!({})),
        Err("no such variable or function `frobnicate`".to_owned())
    );
    assert_eq!(eval("has(input.x)", json!({"y": 1})), Ok(json!(false)));
    assert_eq!(eval("has(input.x)", json!({"x": null})), Ok(json!(true)));
    assert_eq!(
        eval("has(input.x) ? input.x : 10", json!({})),
        Ok(json!(10))
    );
}

#[test]
fn other_evaluation_errors_read_well() {
    let cases = [
        ("input.n / 0", "division by zero"),
        ("input.n % 0", "modulus by zero"),
        (
            "9223372036854775807 + input.n",
            "overflow: 9223372036854775807 + 3",
        ),
        ("[1, 2][input.n]", "index 3 out of bounds"),
        ("size(input.n)", "no function `size` taking (int)"),
        (
            "'abc'.startsWith(input.n)",
            "no function `startsWith` on string taking (int)",
        ),
        ("input.n.x", "cannot select a field of an int"),
        ("input.n ? 1 : 2", "expected bool, got int"),
        (
            "int('x')",
            "int(): string parse error: invalid digit found in string",
        ),
    ];
    for (text, message) in cases {
        assert_eq!(
            eval(text, json!({"n": 3})),
            Err(message.to_owned()),
            "{text}"
        );
    }
}

#[test]
fn conditions_must_be_booleans() {
    let e = compile("input.n > 2");
    assert_eq!(e.evaluate_bool(&[("input", &json!({"n": 3}))]), Ok(true));
    assert_eq!(e.evaluate_bool(&[("input", &json!({"n": 1}))]), Ok(false));
    let cases = [
        ("input.name", "the condition yields a string, not a boolean"),
        ("input.n", "the condition yields an int, not a boolean"),
        ("input.none", "the condition yields null, not a boolean"),
        ("[input.n]", "the condition yields a list, not a boolean"),
    ];
    let input = json!({"name": "ada", "n": 3, "none": null});
    for (text, message) in cases {
        let result = compile(text).evaluate_bool(&[("input", &input)]);
        assert_eq!(result, Err(message.to_owned()), "{text}");
    }
    // Evaluation errors stay what they are.
    assert_eq!(
        compile("input.x").evaluate_bool(&[("input", &json!({}))]),
        Err("no such key `x`".to_owned())
    );
}

#[test]
fn lists_maps_and_macros() {
    let input = json!({"items": [1, 2, 3], "tags": {"a": "x"}});
    let cases = [
        ("input.items.map(x, x * 2)", json!([2, 4, 6])),
        ("input.items.filter(x, x > 1)", json!([2, 3])),
        ("input.items.all(x, x > 0)", json!(true)),
        ("input.items.exists_one(x, x == 2)", json!(true)),
        ("size(input.items)", json!(3)),
        ("input.items.size() + size(input.tags)", json!(4)),
        ("2 in input.items", json!(true)),
        ("'a' in input.tags", json!(true)),
        ("input.tags.a + 'y'", json!("xy")),
        ("input.items[1]", json!(2)),
        (
            "{'total': input.items[0] + input.items[2], 'ok': true}",
            json!({"ok": true, "total": 4}),
        ),
        (
            "[input.tags, null, 'x', 1.5]",
            json!([{"a": "x"}, null, "x", 1.5]),
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(eval(text, input.clone()), Ok(expected), "{text}");
    }
}

#[test]
fn several_variables() {
    let e = compile("input.n + workflow.input.base + state.count + steps.a.n");
    let result = e.evaluate(&[
        ("input", &json!({"n": 1})),
        ("workflow", &json!({"input": {"base": 10}})),
        ("state", &json!({"count": 100})),
        ("steps", &json!({"a": {"n": 1000}})),
    ]);
    assert_eq!(result, Ok(json!(1111)));
}

#[test]
fn timestamps_and_durations() {
    let cases = [
        (
            "timestamp('2026-11-29T10:00:00Z') + duration('1.5s')",
            json!("2026-11-29T10:00:01.5Z"),
        ),
        (
            "timestamp(input.at) + duration('2s')",
            json!("2026-11-29T10:00:02Z"),
        ),
        (
            "timestamp('2026-11-29T12:00:00+02:00')",
            json!("2026-11-29T10:00:00Z"),
        ),
        ("duration('1.5s')", json!("1.5s")),
        ("duration('90m')", json!("5400s")),
        ("duration('-2s')", json!("-2s")),
        (
            "timestamp('2026-11-29T10:00:03Z') - timestamp(input.at)",
            json!("3s"),
        ),
        (
            "timestamp(input.at) < timestamp('2027-01-01T00:00:00Z')",
            json!(true),
        ),
        ("timestamp(input.at).getFullYear()", json!(2026)),
    ];
    let input = json!({"at": "2026-11-29T10:00:00Z"});
    for (text, expected) in cases {
        assert_eq!(eval(text, input.clone()), Ok(expected), "{text}");
    }
    assert!(
        eval("timestamp('not a time')", json!({}))
            .unwrap_err()
            .starts_with("timestamp(): ")
    );
}

#[test]
fn json_to_cel() {
    assert_eq!(to_cel(&json!(3)), Cel::Int(3));
    assert_eq!(to_cel(&json!(-3)), Cel::Int(-3));
    assert_eq!(to_cel(&json!(i64::MAX)), Cel::Int(i64::MAX));
    assert_eq!(to_cel(&json!(u64::MAX)), Cel::Float(u64::MAX as f64));
    assert_eq!(to_cel(&json!(2.5)), Cel::Float(2.5));
    assert_eq!(to_cel(&json!(2.0)), Cel::Float(2.0));
    assert_eq!(to_cel(&json!("s")), Cel::String(Arc::new("s".to_owned())));
    assert_eq!(to_cel(&json!(true)), Cel::Bool(true));
    assert_eq!(to_cel(&json!(null)), Cel::Null);
    assert_eq!(
        to_cel(&json!([1, "a"])),
        Cel::List(Arc::new(vec![
            Cel::Int(1),
            Cel::String(Arc::new("a".to_owned()))
        ]))
    );
    let Cel::Map(map) = to_cel(&json!({"k": 1})) else {
        panic!("not a map")
    };
    assert_eq!(
        map.map.get(&Key::String(Arc::new("k".to_owned()))),
        Some(&Cel::Int(1))
    );
    // Through evaluation, values come back unchanged.
    let value = json!({"a": [1, 2.5, "x", true, null, {"b": {}}], "c": -7});
    assert_eq!(eval("input", value.clone()), Ok(value));
}

#[test]
fn cel_to_json() {
    assert_eq!(eval("3u", json!({})), Ok(json!(3)));
    assert_eq!(eval("-3", json!({})), Ok(json!(-3)));
    assert_eq!(eval("2.0", json!({})), Ok(json!(2.0)));
    // Map keys: sorted; int, uint and bool keys in their text form.
    assert_eq!(
        eval(
            "{'b': 1, 'a': 2, 1: 'one', 2u: 'two', true: 'yes'}",
            json!({})
        ),
        Ok(json!({"1": "one", "2": "two", "a": 2, "b": 1, "true": "yes"}))
    );
    let keys = eval("{'z': 1, 'a': 2, 'm': 3}", json!({})).unwrap();
    let keys: Vec<&String> = keys.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["a", "m", "z"]);
    assert_eq!(
        eval("{1: 'a', '1': 'b'}", json!({})),
        Err("the map has two keys that both become the JSON key \"1\"".to_owned())
    );
    let cases = [
        (
            "1.0 / 0.0",
            "the double +infinity is not representable in JSON",
        ),
        (
            "-1.0 / 0.0",
            "the double -infinity is not representable in JSON",
        ),
        ("0.0 / 0.0", "the double NaN is not representable in JSON"),
        ("[0.0 / 0.0]", "the double NaN is not representable in JSON"),
        (
            "b'abc'",
            "a value of type bytes is not representable in JSON",
        ),
    ];
    for (text, message) in cases {
        assert_eq!(eval(text, json!({})), Err(message.to_owned()), "{text}");
    }
}

#[test]
fn expressions_compare_by_text_and_are_shareable() {
    fn shareable<T: Send + Sync + Clone + fmt::Debug + PartialEq>() {}
    shareable::<Expr>();
    assert_eq!(compile("input.a"), compile("input.a"));
    assert_ne!(compile("input.a"), compile("input .a"));
    assert_eq!(compile("input.a").text(), "input.a");
    assert_eq!(format!("{:?}", compile("input.a")), "Expr(\"input.a\")");

    let e = compile("input.n * 2");
    let threads: Vec<_> = (0..2)
        .map(|n| {
            let e = e.clone();
            std::thread::spawn(move || e.evaluate(&[("input", &json!({"n": n}))]))
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(results, [Ok(json!(0)), Ok(json!(2))]);
}
