// Runs mongo-java-server's in-memory backend on 127.0.0.1:<port>, for the kubenenc tests.
//
// It reports itself as MongoDB 5.0 (wire version 13): its own default (4.0, wire 7) is
// older than PyMongo 4 accepts. It has no transactions and no change streams, which the
// backend does not use; what it exercises is the backend's MongoDB path (one invocation
// collection, secondary and TTL indexes, documents read directly).
import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import java.util.List;

public class Main {
    public static void main(String[] args) throws Exception {
        MongoVersion version = new MongoVersion() {
            public List<Integer> getVersionArray() {
                return List.of(5, 0, 0);
            }

            public int getWireVersion() {
                return 13;
            }
        };
        MongoServer server = new MongoServer(new MemoryBackend().version(version));
        server.bind("127.0.0.1", Integer.parseInt(args[0]));
        System.err.println("mongo-java-server listening on 127.0.0.1:" + args[0]);
        Thread.currentThread().join();
    }
}
