/*
 * Stub bcryptprimitives.dll for Wine 8, which lacks it. The Windows wheels of
 * `cryptography` (so pyOpenSSL, Twisted TLS and txredisapi) import ProcessPrng
 * from it; forward to RtlGenRandom (advapi32!SystemFunction036).
 * Built by .ci/iocp.sh with x86_64-w64-mingw32-gcc.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T size)
{
    while (size > 0) {
        ULONG chunk = size > 0x40000000 ? 0x40000000 : (ULONG)size;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        size -= chunk;
    }
    return TRUE;
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)instance;
    (void)reason;
    (void)reserved;
    return TRUE;
}
