package flashsale.ddb;

import java.lang.instrument.Instrumentation;

/**
 * LocalStack always starts DynamoDB Local with -javaagent:ddb-local-loader-0.1.jar,
 * a patch it normally downloads (it lifts the limit of 20 GSIs per table). Nothing
 * can be downloaded here, so install.sh builds this agent that does nothing in its
 * place: DynamoDB Local then runs with its stock limits.
 */
public final class NoopAgent {
    private NoopAgent() {}

    public static void premain(String args, Instrumentation instrumentation) {}
}
