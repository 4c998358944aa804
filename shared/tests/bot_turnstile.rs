//! The Turnstile adapter against a local stand-in of siteverify that honours Cloudflare's
//! dummy secret keys (always passes, always fails, already spent) and a "production" key with
//! single use, 300 s tokens and idempotency keys (testkit::turnstile).

use std::time::Duration;

use flashsale_core::bot::challenge::turnstile::{TurnstileConfig, TurnstileVerifier};
use flashsale_core::bot::challenge::{Binding, ChallengeVerifier, Refusal};
use flashsale_core::bot::defence::{BotDefence, DefencePolicy, Suspect, Verdict};
use flashsale_core::bot::score::Telemetry;
use flashsale_core::bot::watchlist::memory::InMemoryWatchlist;
use flashsale_core::config::Secret;
use flashsale_core::domain::{Clock, SaleId, SystemClock, UserId};
use flashsale_core::rate_limit::RequestId;
use testkit::turnstile::{
    TurnstileStandIn, ALREADY_SPENT, ALWAYS_FAILS, ALWAYS_PASSES, DUMMY_TOKEN, SECRET,
};

fn verifier(standin: &TurnstileStandIn, secret: &str) -> TurnstileVerifier {
    TurnstileVerifier::new(TurnstileConfig {
        site_key: "0x4AAAAAAAsite".into(),
        secret: Secret::new(secret),
        siteverify_url: standin.siteverify_url(),
        timeout: Duration::from_secs(2),
        // The dummy secrets are refused without it (they accept only the unbound dummy token).
        accept_test_keys: true,
    })
    .unwrap()
}

fn binding(buyer: &str) -> Binding {
    Binding {
        buyer: UserId::parse(buyer).unwrap(),
        sale: SaleId::parse("drop").unwrap(),
        action: "reserve",
    }
}

/// What the widget gives a person who solved the challenge issued for `binding`.
fn solve_issued(standin: &TurnstileStandIn, v: &TurnstileVerifier, binding: &Binding) -> String {
    let issued = v.issue(binding, 90, SystemClock.now()).unwrap();
    let c = &issued.challenge;
    assert_eq!(c["provider"], "turnstile");
    assert_eq!(c["siteKey"], "0x4AAAAAAAsite");
    standin.solve(c["action"].as_str().unwrap(), c["cData"].as_str().unwrap())
}

#[tokio::test]
async fn the_documented_dummy_secrets_pass_fail_and_report_spent() {
    let standin = TurnstileStandIn::start().await;
    let now = SystemClock.now();
    let alice = binding("alice");

    // Always passes: the dummy token is solved (with test keys there is no binding to check);
    // a real token is refused, as Cloudflare's dummy secrets do.
    let passes = verifier(&standin, ALWAYS_PASSES);
    let solved = passes.verify(DUMMY_TOKEN, &alice, now).await.unwrap();
    assert!(solved.nonce.starts_with("turnstile:"));
    assert!(solved.expires_at > now && solved.expires_at <= now.plus(Duration::from_secs(301)));
    let real = solve_issued(&standin, &passes, &alice);
    assert_eq!(
        passes.verify(&real, &alice, now).await,
        Err(Refusal::Failed)
    );

    assert_eq!(
        verifier(&standin, ALWAYS_FAILS)
            .verify(DUMMY_TOKEN, &alice, now)
            .await,
        Err(Refusal::Failed)
    );
    assert_eq!(
        verifier(&standin, ALREADY_SPENT)
            .verify(DUMMY_TOKEN, &alice, now)
            .await,
        Err(Refusal::Replayed)
    );
}

#[tokio::test]
async fn a_token_is_bound_to_its_buyer_single_use_and_short_lived() {
    let standin = TurnstileStandIn::start().await;
    let v = verifier(&standin, SECRET);
    let now = SystemClock.now();
    let (alice, mallory) = (binding("alice"), binding("mallory"));

    let token = solve_issued(&standin, &v, &alice);
    assert!(v.verify(&token, &alice, now).await.is_ok());
    // Verified again (our retry, or the client's after a lost answer): the same answer, thanks
    // to the idempotency key derived from the token.
    assert!(v.verify(&token, &alice, now).await.is_ok());
    // Another buyer with alice's token: refused by the binding.
    assert_eq!(v.verify(&token, &mallory, now).await, Err(Refusal::Failed));
    let join = Binding {
        action: "join",
        ..alice.clone()
    };
    assert_eq!(v.verify(&token, &join, now).await, Err(Refusal::Failed));

    // Solved six minutes ago: Cloudflare calls it timeout-or-duplicate, a block either way.
    let issued = v.issue(&alice, 90, now).unwrap();
    let old = standin.solve_aged(
        "reserve",
        issued.challenge["cData"].as_str().unwrap(),
        Duration::from_secs(360),
    );
    assert_eq!(v.verify(&old, &alice, now).await, Err(Refusal::Replayed));
    // A token Cloudflare never issued.
    assert_eq!(
        v.verify("made-up-token", &alice, now).await,
        Err(Refusal::Failed)
    );
    // A token that is still valid at Cloudflare but presented after its 300 s.
    let fresh = solve_issued(&standin, &v, &alice);
    assert_eq!(
        v.verify(&fresh, &alice, now.plus(Duration::from_secs(301)))
            .await,
        Err(Refusal::Expired)
    );
}

#[tokio::test]
async fn bad_tokens_are_client_errors_and_an_outage_or_a_wrong_key_is_unavailable() {
    let standin = TurnstileStandIn::start().await;
    let v = verifier(&standin, SECRET);
    let now = SystemClock.now();
    let alice = binding("alice");
    for bad in ["", "   ", &"x".repeat(2049)] {
        assert!(
            matches!(v.verify(bad, &alice, now).await, Err(Refusal::Malformed(_))),
            "{bad:.10}"
        );
    }
    let calls = standin.calls();
    assert_eq!(calls, 0, "malformed tokens are refused without a call");

    let token = solve_issued(&standin, &v, &alice);
    standin.fail_next(1);
    assert!(matches!(
        v.verify(&token, &alice, now).await,
        Err(Refusal::Unavailable(_))
    ));
    // After the outage the same token still verifies (the 5xx did not spend it).
    assert!(v.verify(&token, &alice, now).await.is_ok());

    let wrong_key = verifier(&standin, "0x4AAAAAAAwrong");
    let token = solve_issued(&standin, &wrong_key, &alice);
    assert!(matches!(
        wrong_key.verify(&token, &alice, now).await,
        Err(Refusal::Unavailable(_))
    ));

    // Our own call malformed (Cloudflare's `bad-request`): not the person's doing, so a 503
    // for them, never a 400 they cannot fix or a block.
    let misrouted = TurnstileVerifier::new(TurnstileConfig {
        site_key: "0x4AAAAAAAsite".into(),
        secret: Secret::new(SECRET),
        siteverify_url: standin.siteverify_url().replace("siteverify", "elsewhere"),
        timeout: Duration::from_secs(2),
        accept_test_keys: false,
    })
    .unwrap();
    let token = solve_issued(&standin, &misrouted, &alice);
    assert!(matches!(
        misrouted.verify(&token, &alice, now).await,
        Err(Refusal::Unavailable(_))
    ));

    // Nothing listens: unavailable within the budget, not a hang.
    let gone = TurnstileVerifier::new(TurnstileConfig {
        site_key: "k".into(),
        secret: Secret::new(SECRET),
        siteverify_url: format!("http://127.0.0.1:{}/siteverify", testkit::free_port()),
        timeout: Duration::from_millis(500),
        accept_test_keys: false,
    })
    .unwrap();
    assert!(matches!(
        gone.verify("some-token", &alice, now).await,
        Err(Refusal::Unavailable(_))
    ));
}

/// Through the defence: a verified token admits and grants the pass; an outage answers 503
/// (no pass, no block); a spent token blocks.
#[tokio::test]
async fn the_defence_admits_blocks_or_defers_on_turnstiles_answer() {
    let standin = TurnstileStandIn::start().await;
    let defence = |secret: &str| BotDefence {
        watchlist: InMemoryWatchlist::default(),
        challenges: verifier(&standin, secret),
        clock: SystemClock,
        policy: DefencePolicy::default(),
    };
    // Scores the challenge threshold: a solution is only judged there.
    let suspect = |buyer: &str, request: &str, solution: &str| Suspect {
        buyer: UserId::parse(buyer).unwrap(),
        address: None,
        request: RequestId::from_gateway(Some(request)),
        binding: binding(buyer),
        account_age: Some(Duration::from_secs(600)),
        telemetry: Some(Telemetry {
            webdriver: true,
            headless: true,
            ..Telemetry::default()
        }),
        edge_signals: vec!["automated-browser".into()],
        solution: Some(solution.to_owned()),
    };

    let d = defence(SECRET);
    let token = solve_issued(&standin, &d.challenges, &binding("alice"));
    standin.fail_next(1);
    assert_eq!(
        d.judge(&suspect("alice", "r1", &token)).await.unwrap(),
        Verdict::VerifierUnavailable
    );
    assert!(matches!(
        d.judge(&suspect("alice", "r2", &token)).await.unwrap(),
        Verdict::Admitted { by_pass: false, .. }
    ));
    // Its pass admits the next request without a call to Cloudflare.
    let calls = standin.calls();
    assert!(matches!(
        d.judge(&suspect("alice", "r3", &token)).await.unwrap(),
        Verdict::Admitted { by_pass: true, .. }
    ));
    assert_eq!(standin.calls(), calls);
    // Mallory with alice's token is blocked.
    let Verdict::Blocked { block } = d.judge(&suspect("mallory", "m1", &token)).await.unwrap()
    else {
        panic!("not blocked")
    };
    assert_eq!(block.reason, "challenge-failed");

    let spent = defence(ALREADY_SPENT);
    let Verdict::Blocked { block } = spent
        .judge(&suspect("bob", "b1", DUMMY_TOKEN))
        .await
        .unwrap()
    else {
        panic!("not blocked")
    };
    assert_eq!(block.reason, "challenge-replayed");
}
