//! Parser tests: precedence, spans, recovery at declaration boundaries, lexical errors.

use gle_syntax::ast::{BinOp, Decl, ExprKind};
use gle_syntax::{SourceFile, parse};

fn const_expr(src: &str) -> ExprKind {
    let (file, diags) = parse(&format!("const a = {src}\n"));
    assert!(diags.is_empty(), "{diags:?}");
    match &file.decls[0] {
        Decl::Const(c) => c.value.node.clone(),
        other => panic!("not a const: {other:?}"),
    }
}

fn show(e: &ExprKind) -> String {
    match e {
        ExprKind::Number(v) => format!("{v}"),
        ExprKind::Path(p) => p.iter().map(|x| x.node.as_str()).collect::<Vec<_>>().join("."),
        ExprKind::Neg(a) => format!("(-{})", show(&a.node)),
        ExprKind::Binary { op, lhs, rhs } => format!("({} {} {})", show(&lhs.node), op.symbol(), show(&rhs.node)),
        ExprKind::D { tau, arg } => format!("(D[{}] {})", show(&tau.node), show(&arg.node)),
        ExprKind::I { tau, arg } => format!("(I[{}] {})", show(&tau.node), show(&arg.node)),
        ExprKind::Call { func, args } => format!(
            "{}({})",
            func.node,
            args.iter().map(|a| show(&a.value.node)).collect::<Vec<_>>().join(", ")
        ),
        ExprKind::List(items) => format!(
            "[{}]",
            items.iter().map(|a| show(&a.node)).collect::<Vec<_>>().join(", ")
        ),
        ExprKind::Str(s) => format!("{s:?}"),
    }
}

#[test]
fn operator_precedence_and_associativity() {
    assert_eq!(show(&const_expr("1 + 2 * 3")), "(1 + (2 * 3))");
    assert_eq!(show(&const_expr("1 - 2 - 3")), "((1 - 2) - 3)");
    assert_eq!(show(&const_expr("2 ^ 3 ^ 2")), "(2 ^ (3 ^ 2))");
    assert_eq!(show(&const_expr("-2 ^ 2")), "(-(2 ^ 2))");
    assert_eq!(show(&const_expr("a / b * c")), "((a / b) * c)");
    assert_eq!(show(&const_expr("D[tau_m] u - input")), "((D[tau_m] u) - input)");
    assert_eq!(show(&const_expr("D[a] I[b] x")), "(D[a] (I[b] x))");
    assert_eq!(show(&const_expr("f(x, y: 2) + [1, 2]")), "(f(x, 2) + [1, 2])");
}

#[test]
fn binary_op_symbols() {
    let ops = [BinOp::Add, BinOp::Sub, BinOp::Mul, BinOp::Div, BinOp::Pow];
    assert_eq!(ops.map(BinOp::symbol), ["+", "-", "*", "/", "^"]);
}

#[test]
fn spans_cover_the_written_text_without_trailing_trivia() {
    let src = "population p[2] : N(tau: 1)   // comment\n\nrun {\n    dt 0.1\n}\n";
    let (file, diags) = parse(src);
    assert!(diags.is_empty(), "{diags:?}");
    let Decl::Population(p) = &file.decls[0] else { panic!() };
    assert_eq!(&src[p.span.start..p.span.end], "population p[2] : N(tau: 1)");
    assert_eq!(&src[p.name.span.start..p.name.span.end], "p");
    assert_eq!(&src[p.values[0].value.span.start..p.values[0].value.span.end], "1");
}

#[test]
fn recovery_reports_each_broken_declaration() {
    let src = "const a = = 1\nconst b = 2\nconst c = 3 *\nconst d = (\n";
    let (file, diags) = parse(src);
    assert_eq!(file.decls.len(), 1, "only `b` parses");
    let lines: Vec<usize> = diags
        .iter()
        .map(|d| SourceFile::new("x", src).line_col(d.span.start).0)
        .collect();
    assert_eq!(lines, [1, 3, 4]);
    assert!(diags.iter().all(|d| d.code == "E0100"));
}

#[test]
fn lexical_errors_have_codes_and_spans() {
    let cases = [
        ("const a = 1 @ 2\n", "E0001", "@"),
        ("dataset d {\n file \"x\n}\n", "E0002", "\"x"),
        ("const a = 1 /* open\n", "E0003", "/*"),
        ("const a = 1e\n", "E0004", "1e"),
        ("const a = 3.x\n", "E0004", "3.x"),
        ("dataset d {\n file \"a\\qb\"\n}\n", "E0005", "\\q"),
        ("const a = 1e999\n", "E0007", "1e999"),
    ];
    for (src, code, text) in cases {
        let (_, diags) = parse(src);
        assert_eq!(diags.len(), 1, "{src:?}: {diags:?}");
        assert_eq!(diags[0].code, code, "{src:?}");
        assert_eq!(&src[diags[0].span.start..diags[0].span.end], text, "{src:?}");
    }
}

#[test]
fn declarations_start_only_at_line_starts_outside_brackets() {
    // `learn` after a projection is a modifier, even on its own line; `run` without `{` is a name.
    let src = "connect x -> h : dense(init: 1)\n    learn\nconst run_length = 3\nrun {\n    dt 0.1\n}\n";
    let (file, diags) = parse(src);
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(file.decls.len(), 3);
}

#[test]
fn rendering_is_rustc_style() {
    let src = "const a = = 1\n";
    let (_, diags) = parse(src);
    let out = diags[0].render(&SourceFile::new("m.gle", src));
    assert_eq!(
        out,
        "error[E0100]: expected an expression, found `=`\n --> m.gle:1:11\n  |\n1 | const a = = 1\n  |           ^ expected an expression\n  |"
    );
    let json = diags[0].to_json(&SourceFile::new("m.gle", src));
    assert_eq!(json["code"], "E0100");
    assert_eq!(json["line"], 1);
    assert_eq!(json["column"], 11);
}

#[test]
fn line_col_counts_characters() {
    let f = SourceFile::new("x", "ab\nτx\n");
    assert_eq!(f.line_col(0), (1, 1));
    assert_eq!(f.line_col(3), (2, 1));
    assert_eq!(f.line_col(5), (2, 2), "τ is two bytes but one column");
    assert_eq!(f.line_col(100), (3, 1), "offsets past the end clamp");
}
