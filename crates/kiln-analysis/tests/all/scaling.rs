//! Chinchilla's approach-3 law and its closed-form optimum; Kaplan's laws.

use kiln_analysis::scaling::{Chinchilla, Kaplan, PF_DAY};

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
