"""ClientPool: a client is lent to one request at a time, reused afterwards, and closed with the pool."""

import threading

import httpx
import pytest

from include.imis_thrive.http_clients import ClientPool


def pool_over(handler) -> ClientPool:
    return ClientPool(lambda: httpx.Client(base_url="https://imis.test/", transport=httpx.MockTransport(handler)))


def test_requests_in_flight_together_never_share_a_client_and_the_pool_grows_only_to_their_number():
    in_flight, gate = 4, threading.Barrier(4)

    def handler(request: httpx.Request) -> httpx.Response:
        gate.wait(timeout=5)  # all four requests are in flight at once
        return httpx.Response(200, json={})

    pool = pool_over(handler)
    used: list[httpx.Client] = []
    lock = threading.Lock()

    def one_request() -> None:
        with pool.lent() as client:
            with lock:
                used.append(client)
            client.get("api/Activity")

    for _ in range(3):  # three waves of four: the second and third reuse the first's clients
        threads = [threading.Thread(target=one_request) for _ in range(in_flight)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    assert len(used) == 3 * in_flight
    assert len(set(map(id, used[:in_flight]))) == in_flight  # concurrent requests: a client each
    assert pool.size == in_flight


def test_a_sequence_of_requests_reuses_one_client():
    pool = pool_over(lambda request: httpx.Response(200, json={}))
    lent = set()
    for _ in range(5):
        with pool.lent() as client:
            lent.add(id(client))
            client.get("api/Activity")
    assert len(lent) == 1 and pool.size == 1


def test_close_closes_every_client_and_refuses_further_requests():
    pool = pool_over(lambda request: httpx.Response(200, json={}))
    with pool.lent() as client:
        client.get("api/Activity")
    pool.close()
    assert client.is_closed
    with pytest.raises(RuntimeError, match="closed"), pool.lent():
        pass
