//! Chinchilla's approach-3 law and its closed-form optimum, its Table 3 rows by the 20-tokens-per-parameter
//! rule; Kaplan's laws.

use kiln_analysis::scaling::{tokens_per_param_rule, Chinchilla, Kaplan, PF_DAY};

#[test]
fn chinchilla_exponents() {
    let c = Chinchilla::APPROACH_3;
    assert_eq!((c.e, c.a, c.b, c.alpha, c.beta), (1.69, 406.4, 410.7, 0.34, 0.28));
    // REFERENCE.md: N_opt ∝ C^0.452, D_opt ∝ C^0.548
    assert!((c.params_exponent() - 0.452).abs() < 5e-4, "{}", c.params_exponent());
    assert!((c.tokens_exponent() - 0.548).abs() < 5e-4, "{}", c.tokens_exponent());
    assert!((c.params_exponent() + c.tokens_exponent() - 1.0).abs() < 1e-15);
    // scaling C by 10 scales N_opt by 10^0.452
    let (a, b) = (c.compute_optimal(1e22).unwrap(), c.compute_optimal(1e23).unwrap());
    assert!((b.params / a.params - 10f64.powf(0.28 / 0.62)).abs() < 1e-9);
    assert!((b.tokens / a.tokens - 10f64.powf(0.34 / 0.62)).abs() < 1e-9);
}

#[test]
fn chinchilla_optimum_is_the_constrained_minimum() {
    let c = Chinchilla::APPROACH_3;
    for budget in [1e20, 5.76e23, 1e25] {
        let o = c.compute_optimal(budget).unwrap();
        assert!((6.0 * o.params * o.tokens / budget - 1.0).abs() < 1e-12);
        let best = o.loss.unwrap();
        for f in [0.5, 0.8, 0.95, 1.05, 1.25, 2.0] {
            let n = o.params * f;
            assert!(c.loss(n, budget / (6.0 * n)).unwrap() > best);
        }
        // inverting N_opt(C)
        assert!((c.compute_for_params(o.params).unwrap() / budget - 1.0).abs() < 1e-9);
    }
    // the law itself: L(N, D) = E + A/N^α + B/D^β
    let l = c.loss(70e9, 1.4e12).unwrap();
    let want = 1.69 + 406.4 / 70e9f64.powf(0.34) + 410.7 / 1.4e12f64.powf(0.28);
    assert!((l - want).abs() < 1e-12);
    assert!(c.loss(0.0, 1.0).is_err() && c.compute_optimal(-1.0).is_err());
}

#[test]
fn kaplan() {
    let k = Kaplan::PAPER;
    assert_eq!(k.n_opt_exponent, 0.73);
    let (a, b) = (k.compute_optimal(1e21).unwrap(), k.compute_optimal(1e22).unwrap());
    assert!((b.params / a.params - 10f64.powf(0.73)).abs() < 1e-9);
    // D = C/(6N) grows as C^0.27
    assert!((b.tokens / a.tokens - 10f64.powf(0.27)).abs() < 1e-9);
    // N_opt at one PF-day is the coefficient
    assert!((k.compute_optimal(PF_DAY).unwrap().params - 1.3e9).abs() < 1e-3);
    // L(N) at N_c is 1, and L(N, D → ∞) → L(N)
    assert!((k.loss_params(8.8e13).unwrap() - 1.0).abs() < 1e-12);
    assert!((k.loss(1e9, 1e30).unwrap() - k.loss_params(1e9).unwrap()).abs() < 1e-6);
    assert!((k.loss_compute(3.1e8 * PF_DAY).unwrap() - 1.0).abs() < 1e-12);
    assert!((k.loss_tokens(5.4e13).unwrap() - 1.0).abs() < 1e-12);
}

/// Chinchilla's Table 3 (approach 1: compute-optimal parameters and tokens for a FLOP budget):
/// the 20-tokens-per-parameter rule gives every row's N within 5 % and D within 8 % (the 67 B
/// row itself is 4.7 % off C = 6·N·D: the paper rounds its tokens to 1.5 T).
#[test]
fn chinchilla_table_3_rows() {
    let rows = [
        (400e6, 1.92e19, 8.0e9),
        (1e9, 1.21e20, 20.2e9),
        (10e9, 1.23e22, 205.1e9),
        (67e9, 5.76e23, 1.5e12),
        (175e9, 3.85e24, 3.7e12),
        (280e9, 9.90e24, 5.9e12),
        (520e9, 3.43e25, 11.0e12),
        (1e12, 1.27e26, 21.2e12),
        (10e12, 1.30e28, 216.2e12),
    ];
    for (n, c, d) in rows {
        let o = tokens_per_param_rule(c, 20.0).unwrap();
        assert!((o.params / n - 1.0).abs() < 0.05, "C = {c:e}: N {} vs {n:e}", o.params);
        assert!((o.tokens / d - 1.0).abs() < 0.08, "C = {c:e}: D {} vs {d:e}", o.tokens);
        assert!((6.0 * o.params * o.tokens / c - 1.0).abs() < 1e-12);
    }
    assert!(tokens_per_param_rule(1e20, 0.0).is_err() && tokens_per_param_rule(-1.0, 20.0).is_err());
}
